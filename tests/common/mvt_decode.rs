//! A minimal Mapbox Vector Tile decoder, written here from the MVT 2.1 spec
//! and independent of the `mvt` crate the server encodes with, so that tests
//! check the bytes against the spec rather than against the encoder.
#![allow(dead_code)]

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    F(f64),
    I(i64),
    B(bool),
}

#[derive(Debug, Clone)]
pub struct Feature {
    pub id: Option<u64>,
    /// 1 point, 2 line, 3 polygon.
    pub kind: u32,
    /// Rings / line parts / points (each point a one-element part), in
    /// integer tile coordinates.
    pub parts: Vec<Vec<[i64; 2]>>,
    pub props: BTreeMap<String, Val>,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub extent: u32,
    pub version: u32,
    pub features: Vec<Feature>,
}

struct R<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> R<'a> {
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        let mut s = 0;
        loop {
            let byte = self.b[self.i];
            self.i += 1;
            v |= u64::from(byte & 0x7f) << s;
            if byte & 0x80 == 0 {
                return v;
            }
            s += 7;
        }
    }
    fn bytes(&mut self) -> &'a [u8] {
        let n = self.varint() as usize;
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        s
    }
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
    fn skip(&mut self, wire: u64) {
        match wire {
            0 => {
                self.varint();
            }
            1 => self.i += 8,
            2 => {
                self.bytes();
            }
            5 => self.i += 4,
            w => panic!("wire type {w}"),
        }
    }
}

fn packed(b: &[u8]) -> Vec<u32> {
    let mut r = R { b, i: 0 };
    let mut out = Vec::new();
    while !r.done() {
        out.push(r.varint() as u32);
    }
    out
}

fn value(b: &[u8]) -> Val {
    let mut r = R { b, i: 0 };
    let mut v = Val::B(false);
    while !r.done() {
        let k = r.varint();
        match (k >> 3, k & 7) {
            (1, 2) => v = Val::Str(String::from_utf8(r.bytes().to_vec()).expect("utf8")),
            (2, 5) => {
                let a: [u8; 4] = r.b[r.i..r.i + 4].try_into().unwrap();
                r.i += 4;
                v = Val::F(f64::from(f32::from_le_bytes(a)));
            }
            (3, 1) => {
                let a: [u8; 8] = r.b[r.i..r.i + 8].try_into().unwrap();
                r.i += 8;
                v = Val::F(f64::from_le_bytes(a));
            }
            (4, 0) => v = Val::I(r.varint() as i64),
            (5, 0) => v = Val::I(r.varint() as i64),
            (6, 0) => {
                let z = r.varint();
                v = Val::I(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
            (7, 0) => v = Val::B(r.varint() != 0),
            (_, w) => r.skip(w),
        }
    }
    v
}

fn zigzag(v: u32) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Decodes geometry commands; panics on anything the spec forbids.
fn geometry(cmds: &[u32], kind: u32) -> Vec<Vec<[i64; 2]>> {
    let (mut x, mut y) = (0i64, 0i64);
    let mut parts: Vec<Vec<[i64; 2]>> = Vec::new();
    let mut i = 0;
    while i < cmds.len() {
        let (id, count) = (cmds[i] & 7, cmds[i] >> 3);
        i += 1;
        match id {
            1 => {
                assert!(count >= 1, "MoveTo with count 0");
                for _ in 0..count {
                    x += zigzag(cmds[i]);
                    y += zigzag(cmds[i + 1]);
                    i += 2;
                    parts.push(vec![[x, y]]);
                }
                if kind != 1 {
                    assert_eq!(count, 1, "MoveTo count must be 1 for lines and polygons");
                }
            }
            2 => {
                assert!(kind != 1, "LineTo in a point feature");
                assert!(count >= 1, "LineTo with count 0");
                let part = parts.last_mut().expect("LineTo before MoveTo");
                for _ in 0..count {
                    x += zigzag(cmds[i]);
                    y += zigzag(cmds[i + 1]);
                    i += 2;
                    part.push([x, y]);
                }
            }
            7 => {
                assert_eq!(kind, 3, "ClosePath outside a polygon");
                assert_eq!(count, 1, "ClosePath count must be 1");
            }
            c => panic!("unknown command {c}"),
        }
    }
    parts
}

/// Twice the signed area in tile space (y down): positive = exterior.
pub fn area2(r: &[[i64; 2]]) -> i64 {
    let n = r.len();
    (0..n)
        .map(|i| {
            let (a, b) = (r[i], r[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum()
}

pub fn decode(bytes: &[u8]) -> Vec<Layer> {
    let mut r = R { b: bytes, i: 0 };
    let mut layers = Vec::new();
    while !r.done() {
        let k = r.varint();
        if k >> 3 != 3 {
            r.skip(k & 7);
            continue;
        }
        let lb = r.bytes();
        let mut lr = R { b: lb, i: 0 };
        let (mut name, mut extent, mut version) = (String::new(), 4096u32, 1u32);
        let (mut keys, mut vals, mut raw_features) = (Vec::new(), Vec::new(), Vec::new());
        while !lr.done() {
            let k = lr.varint();
            match (k >> 3, k & 7) {
                (1, 2) => name = String::from_utf8(lr.bytes().to_vec()).unwrap(),
                (2, 2) => raw_features.push(lr.bytes()),
                (3, 2) => keys.push(String::from_utf8(lr.bytes().to_vec()).unwrap()),
                (4, 2) => vals.push(value(lr.bytes())),
                (5, 0) => extent = lr.varint() as u32,
                (15, 0) => version = lr.varint() as u32,
                (_, w) => lr.skip(w),
            }
        }
        // Keys and values are deduplicated, as the spec asks.
        let mut uniq = keys.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), keys.len(), "duplicate keys in layer {name}");
        for (a, v) in vals.iter().enumerate() {
            assert!(
                !vals[..a].contains(v),
                "duplicate value {v:?} in layer {name}"
            );
        }
        let mut features = Vec::new();
        for fb in raw_features {
            let mut fr = R { b: fb, i: 0 };
            let (mut id, mut tags, mut kind, mut geom) = (None, Vec::new(), 0u32, Vec::new());
            while !fr.done() {
                let k = fr.varint();
                match (k >> 3, k & 7) {
                    (1, 0) => id = Some(fr.varint()),
                    (2, 2) => tags = packed(fr.bytes()),
                    (3, 0) => kind = fr.varint() as u32,
                    (4, 2) => geom = packed(fr.bytes()),
                    (_, w) => fr.skip(w),
                }
            }
            assert!(tags.len() % 2 == 0, "odd tag count");
            let props = tags
                .chunks(2)
                .map(|kv| (keys[kv[0] as usize].clone(), vals[kv[1] as usize].clone()))
                .collect();
            features.push(Feature {
                id,
                kind,
                parts: geometry(&geom, kind),
                props,
            });
        }
        layers.push(Layer {
            name,
            extent,
            version,
            features,
        });
    }
    layers
}
