//! The demo district generator (`onemap demo`).
//!
//! Synthesises a fictional district (示范区), deterministic by seed: a C-shaped
//! band around a city core with a river along one side, roads along the
//! street and community boundaries, the five-level grid hierarchy, and the
//! governance layers on top. All names are made up from `data/names.json`
//! and say so (the district is 示范区, codes start with the unused province
//! prefix 99).
//!
//! Invariants it guarantees, and the tests check independently:
//! - the comprehensive children of every grid tile it exactly, with shared
//!   vertices (see [`lattice`]);
//! - every micro-grid holds 30–100 households, and its `households` equals
//!   the sum over the address points inside it (and each level's the sum over
//!   its children).
//!
//! Same seed and scale, same data: the only randomness is [`rng::Rng`], and
//! every timestamp is relative to a fixed reference time.

pub mod accounts;
pub mod lattice;
pub mod rng;

use crate::model::{GridCode, LayerDef, Value, builtin};
use crate::store::{ChangeSet, LogDetail, Op, Store};
use chrono::{DateTime, Duration, Utc};
use geo::{ChamberlainDuquetteArea, Contains, Coord, Geometry, LineString, Orient, Point, Polygon};
use lattice::{CellRect, Cut, Lattice, Shape, split};
use rng::Rng;
use serde::Deserialize;

/// How big a demo to make.
#[derive(Clone, Debug)]
pub struct Scale {
    pub name: &'static str,
    /// Target counts per level: district, street, community, grid, micro.
    pub levels: [usize; 5],
    pub addresses: usize,
    pub cameras: usize,
    pub risks: usize,
    pub buildings: usize,
    pub events: usize,
    pub r_inner_m: f64,
    pub r_outer_m: f64,
    pub cells_per_micro: f64,
}

impl Scale {
    pub fn parse(name: &str) -> Option<Scale> {
        Some(match name {
            // One real district (DESIGN §4).
            "district" => Scale {
                name: "district",
                levels: [1, 8, 80, 1_100, 11_000],
                addresses: 100_000,
                cameras: 3_000,
                risks: 2_000,
                buildings: 1_500,
                events: 60_000,
                r_inner_m: 2_500.0,
                r_outer_m: 12_000.0,
                cells_per_micro: 2.5,
            },
            // A large city, for load tests.
            "city" => Scale {
                name: "city",
                levels: [6, 90, 900, 12_600, 57_000],
                addresses: 4_000_000,
                cameras: 30_000,
                risks: 20_000,
                buildings: 12_000,
                events: 300_000,
                r_inner_m: 3_000.0,
                r_outer_m: 30_000.0,
                cells_per_micro: 2.5,
            },
            // One street's worth, for quick tests.
            "small" => Scale {
                name: "small",
                levels: [1, 2, 6, 40, 300],
                addresses: 3_000,
                cameras: 100,
                risks: 80,
                buildings: 60,
                events: 1_000,
                r_inner_m: 2_500.0,
                r_outer_m: 5_000.0,
                cells_per_micro: 2.5,
            },
            _ => return None,
        })
    }
}

#[derive(Deserialize)]
struct Names {
    place_words: Vec<String>,
    rural_suffix: Vec<String>,
    road_suffix: Vec<String>,
    surnames: Vec<String>,
    given: Vec<String>,
    building_words: Vec<String>,
    building_suffix: Vec<String>,
    school_suffix: Vec<String>,
    park_suffix: Vec<String>,
    hospital_suffix: Vec<String>,
}

const NAMES_JSON: &str = include_str!("../../data/names.json");

/// The centre of the fictional city core (the district wraps around it).
const CENTER: (f64, f64) = (112.95, 28.20);
/// The county-level code of the first demo district (99: no such province).
const DISTRICT_CODE: u32 = 990101;
/// Everything time-dependent is relative to this instant, so the data does
/// not change with the day it is generated.
pub const REFERENCE_TIME: &str = "2026-11-15T00:00:00Z";

/// One generated layer: its definition and features (geometry, properties in
/// schema order).
pub struct GenLayer {
    pub def: LayerDef,
    pub features: Vec<(Geometry, Vec<Value>)>,
}

pub struct Generated {
    pub layers: Vec<GenLayer>,
    pub seed: u64,
    pub scale: String,
}

impl Generated {
    /// The layers as features with ids 1, 2, … (as a fresh store would
    /// number them), geometry coerced to each layer's type: for building a
    /// catalog in memory without a store (benchmarks, scale tests).
    pub fn into_layers(self) -> anyhow::Result<Vec<(LayerDef, Vec<crate::model::Feature>)>> {
        self.layers
            .into_iter()
            .map(|l| {
                let kind = l.def.geometry;
                let features = l
                    .features
                    .into_iter()
                    .enumerate()
                    .map(|(i, (geometry, properties))| {
                        Ok(crate::model::Feature {
                            id: i as i64 + 1,
                            version: 1,
                            geometry: kind.coerce(geometry).map_err(anyhow::Error::msg)?,
                            properties,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok((l.def, features))
            })
            .collect()
    }
}

/// A node of the grid hierarchy while generating.
struct Node {
    level: usize,
    rect: CellRect,
    code: GridCode,
    name: String,
    parent: Option<usize>,
    urban: bool,
    households: i64,
}

/// Builds a property vector in schema order from (name, value) pairs.
fn props(def: &LayerDef, pairs: Vec<(&str, Value)>) -> Vec<Value> {
    let mut v = vec![Value::Null; def.properties.len()];
    for (k, val) in pairs {
        if let Some(i) = def.prop_index(k) {
            v[i] = val;
        } else {
            debug_assert!(false, "no property {k} in {}", def.name);
        }
    }
    v
}

fn t(s: impl Into<String>) -> Value {
    Value::text(s)
}

struct Ctx {
    names: Names,
}

impl Ctx {
    fn person(&self, rng: &mut Rng) -> String {
        format!(
            "{}{}",
            rng.pick(&self.names.surnames),
            rng.pick(&self.names.given)
        )
    }
    fn phone(&self, rng: &mut Rng) -> String {
        // 199 0000 xxxx: a block no operator issues to people.
        format!("1990000{:04}", rng.int(0, 9999))
    }
    fn place(&self, rng: &mut Rng) -> String {
        rng.pick(&self.names.place_words).clone()
    }
}

/// Generates the demo district. Pure: same inputs, same output.
pub fn generate(scale: &Scale, seed: u64) -> anyhow::Result<Generated> {
    let names: Names = serde_json::from_str(NAMES_JSON)?;
    let ctx = Ctx { names };
    let reference: DateTime<Utc> =
        DateTime::parse_from_rfc3339(REFERENCE_TIME)?.with_timezone(&Utc);

    // The lattice: sized so that cells ≈ micro-grids × cells_per_micro.
    let span = 300f64.to_radians();
    let total_cells = scale.levels[4] as f64 * scale.cells_per_micro;
    let ratio_ln = (scale.r_outer_m / scale.r_inner_m).ln();
    let nt = (total_cells * span / ratio_ln).sqrt().round() as usize;
    let shape = Shape {
        center_lon: CENTER.0,
        center_lat: CENTER.1,
        r_inner_m: scale.r_inner_m,
        r_outer_m: scale.r_outer_m,
        theta0: (-60f64).to_radians(),
        span,
        nt,
    };
    let lat = Lattice::new(shape, &mut Rng::new(seed, "lattice"));
    let cells = lat.nr * lat.nt;

    // The hierarchy, top down. Each level splits its parents into a number
    // of children proportional to their cells (with some spread).
    let mut rng = Rng::new(seed, "hierarchy");
    let mut nodes: Vec<Node> = Vec::new();
    let mut cuts_by_level: Vec<Vec<Cut>> = vec![Vec::new(); 5];
    let mut level_nodes: Vec<Vec<usize>> = vec![Vec::new(); 5];
    let district_rects = split(lat.all(), scale.levels[0], &mut rng, &mut cuts_by_level[0]);
    let urban_limit = lat.nr as f64 * 0.45;
    for (k, r) in district_rects.into_iter().enumerate() {
        let code = GridCode::parse(&format!("{}", DISTRICT_CODE + k as u32))
            .map_err(anyhow::Error::msg)?;
        let name = if scale.levels[0] == 1 {
            "示范区".to_string()
        } else {
            format!(
                "示范{}区",
                ["一", "二", "三", "四", "五", "六", "七", "八", "九"][k % 9]
            )
        };
        level_nodes[0].push(nodes.len());
        nodes.push(Node {
            level: 0,
            rect: r,
            code,
            name,
            parent: None,
            urban: true,
            households: 0,
        });
    }
    for level in 1..5 {
        let per_child = cells as f64 / scale.levels[level] as f64;
        let parents = level_nodes[level - 1].clone();
        for p in parents {
            let pr = nodes[p].rect;
            let spread = if level == 4 { (0.85, 1.15) } else { (0.7, 1.3) };
            let k =
                ((pr.cells() as f64 / per_child) * rng.range(spread.0, spread.1)).round() as usize;
            let k = k.clamp(1, pr.cells());
            let rects = split(pr, k, &mut rng, &mut cuts_by_level[level]);
            let mut used = std::collections::HashSet::new();
            for (n, r) in rects.into_iter().enumerate() {
                let code = nodes[p]
                    .code
                    .child(n as u32 + 1)
                    .ok_or_else(|| anyhow::anyhow!("too many children under {}", nodes[p].code))?;
                let urban = ((r.i0 + r.i1) as f64 / 2.0) < urban_limit;
                let pname = nodes[p].name.clone();
                let name = match level {
                    1 => {
                        let mut w = ctx.place(&mut rng);
                        while !used.insert(w.clone()) {
                            w = ctx.place(&mut rng);
                        }
                        if urban {
                            format!("{w}街道")
                        } else {
                            format!("{w}镇")
                        }
                    }
                    2 => {
                        let mut w = ctx.place(&mut rng);
                        while !used.insert(w.clone()) {
                            w = ctx.place(&mut rng);
                        }
                        if urban {
                            format!("{w}社区")
                        } else {
                            format!("{w}{}", rng.pick(&ctx.names.rural_suffix))
                        }
                    }
                    3 => format!("{pname}第{}网格", n + 1),
                    _ => format!("{pname}第{}微网格", n + 1),
                };
                level_nodes[level].push(nodes.len());
                nodes.push(Node {
                    level,
                    rect: r,
                    code,
                    name,
                    parent: Some(p),
                    urban,
                    households: 0,
                });
            }
        }
    }

    // Which micro-grid owns each cell.
    let mut owner = vec![u32::MAX; cells];
    for &m in &level_nodes[4] {
        let r = nodes[m].rect;
        for i in r.i0..r.i1 {
            for j in r.j0..r.j1 {
                owner[i * lat.nt + j] = m as u32;
            }
        }
    }
    let random_cell = |rng: &mut Rng, r: &CellRect| -> (usize, usize) {
        (r.i0 + rng.below(r.di()), r.j0 + rng.below(r.dj()))
    };

    // Addresses: each micro-grid gets 32–96 households spread over its
    // address points (some carry none: shops, offices, public buildings).
    let addr_def = builtin::layer(builtin::ADDRESSES).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "addresses");
    let mut addresses = Vec::with_capacity(scale.addresses + 1000);
    // Addresses by lattice cell, for the dedicated grids' households below.
    let mut addresses_in_cell: std::collections::HashMap<u32, Vec<usize>> =
        std::collections::HashMap::new();
    let mean_addr = scale.addresses as f64 / scale.levels[4] as f64;
    for &m in &level_nodes[4] {
        let h = rng.int(32, 96);
        let n = ((mean_addr * rng.range(0.6, 1.4)).round() as usize).max(1);
        let mut hh = vec![0i64; n];
        for _ in 0..h {
            hh[rng.below(n)] += 1;
        }
        nodes[m].households = h;
        let r = nodes[m].rect;
        let grid_name = nodes[nodes[m].parent.unwrap_or(m)].name.clone();
        let code = nodes[m].code.to_string();
        for (k, households) in hh.into_iter().enumerate() {
            let (i, j) = random_cell(&mut rng, &r);
            let c = lat.point_in_cell(i, j, rng.range(0.08, 0.92), rng.range(0.08, 0.92));
            let address = format!("{grid_name}{}号{}栋", k + 1, rng.int(1, 30));
            addresses_in_cell
                .entry((i * lat.nt + j) as u32)
                .or_default()
                .push(addresses.len());
            addresses.push((
                Geometry::Point(Point(c)),
                props(
                    &addr_def,
                    vec![
                        ("address", t(address)),
                        ("households", Value::Int(households)),
                        ("grid", t(code.clone())),
                    ],
                ),
            ));
        }
    }
    // Households roll up the hierarchy.
    for level in (1..5).rev() {
        for &n in &level_nodes[level] {
            if let Some(p) = nodes[n].parent {
                nodes[p].households += nodes[n].households;
            }
        }
    }

    // Grids: comprehensive ones from the hierarchy, dedicated ones over
    // schools, industrial parks and hospitals.
    let grid_def = builtin::layer(builtin::GRIDS).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "grids");
    let addr_hh = addr_def
        .prop_index("households")
        .ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut grids = Vec::with_capacity(nodes.len() + 200);
    for n in &nodes {
        let poly = lat.polygon(&n.rect);
        grids.push((
            Geometry::Polygon(poly),
            props(
                &grid_def,
                vec![
                    ("code", t(n.code.to_string())),
                    ("name", t(n.name.clone())),
                    ("level", t(crate::model::GridLevel::ALL[n.level].name())),
                    (
                        "parent",
                        n.parent
                            .map(|p| t(nodes[p].code.to_string()))
                            .unwrap_or(Value::Null),
                    ),
                    ("kind", t("comprehensive")),
                    ("households", Value::Int(n.households)),
                    (
                        "population",
                        Value::Int((n.households as f64 * rng.range(2.4, 2.9)).round() as i64),
                    ),
                    ("staff", t(ctx.person(&mut rng))),
                    ("phone", t(ctx.phone(&mut rng))),
                ],
            ),
        ));
    }
    for &c in &level_nodes[2] {
        let kinds: &[(&Vec<String>, f64)] = if nodes[c].urban {
            &[
                (&ctx.names.school_suffix, 0.45),
                (&ctx.names.hospital_suffix, 0.1),
            ]
        } else {
            &[
                (&ctx.names.park_suffix, 0.3),
                (&ctx.names.school_suffix, 0.15),
            ]
        };
        let mut seq = 9001;
        for (suffixes, p) in kinds {
            if !rng.chance(*p) {
                continue;
            }
            let (i, j) = random_cell(&mut rng, &nodes[c].rect);
            let poly = lat.quad_in_cell(i, j, (0.12, 0.88), (0.12, 0.88));
            let cell = (i * lat.nt + j) as u32;
            let households: i64 = addresses_in_cell
                .get(&cell)
                .into_iter()
                .flatten()
                .map(|&k| &addresses[k])
                .filter(|(g, _)| matches!(g, Geometry::Point(pt) if poly.contains(pt)))
                .map(|(_, pr)| pr[addr_hh].as_i64().unwrap_or(0))
                .sum();
            let code = nodes[c]
                .code
                .child(seq)
                .ok_or_else(|| anyhow::anyhow!("dedicated grid code"))?;
            seq += 1;
            let name = format!("{}{}专属网格", ctx.place(&mut rng), rng.pick(suffixes));
            grids.push((
                Geometry::Polygon(poly),
                props(
                    &grid_def,
                    vec![
                        ("code", t(code.to_string())),
                        ("name", t(name)),
                        ("level", t("grid")),
                        ("parent", t(nodes[c].code.to_string())),
                        ("kind", t("dedicated")),
                        ("households", Value::Int(households)),
                        ("population", Value::Int(0)),
                        ("staff", t(ctx.person(&mut rng))),
                        ("phone", t(ctx.phone(&mut rng))),
                    ],
                ),
            ));
        }
    }

    let micro_of_cell = |i: usize, j: usize| -> &Node { &nodes[owner[i * lat.nt + j] as usize] };
    let micros = &level_nodes[4];

    // Cameras (雪亮工程), near the corners of cells: street intersections.
    let cam_def = builtin::layer(builtin::CAMERAS).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "cameras");
    let mut cameras = Vec::with_capacity(scale.cameras);
    let cam_kinds = [
        ("dome", "球机", 0.3),
        ("bullet", "枪机", 0.4),
        ("structured", "结构化", 0.2),
        ("face", "人脸", 0.1),
    ];
    for k in 0..scale.cameras {
        let m = &nodes[micros[rng.below(micros.len())]];
        let (i, j) = random_cell(&mut rng, &m.rect);
        let near = |rng: &mut Rng| {
            if rng.chance(0.5) {
                rng.range(0.04, 0.15)
            } else {
                rng.range(0.85, 0.96)
            }
        };
        let c = lat.point_in_cell(i, j, near(&mut rng), near(&mut rng));
        let kind = cam_kinds[rng.weighted(&cam_kinds.map(|k| k.2))];
        let status = ["online", "offline", "fault"][rng.weighted(&[0.88, 0.08, 0.04])];
        let fov = if kind.0 == "dome" {
            360.0
        } else {
            rng.range(55.0, 110.0).round()
        };
        let installed = reference - Duration::days(rng.int(30, 3650));
        cameras.push((
            Geometry::Point(Point(c)),
            props(
                &cam_def,
                vec![
                    (
                        "name",
                        t(format!(
                            "{}-{:04}号{}",
                            nodes[m.parent.unwrap_or(0)].name,
                            k + 1,
                            kind.1
                        )),
                    ),
                    ("kind", t(kind.0)),
                    ("status", t(status)),
                    ("direction_deg", Value::Float(rng.range(0.0, 360.0).round())),
                    ("fov_deg", Value::Float(fov)),
                    ("range_m", Value::Float(rng.range(30.0, 150.0).round())),
                    ("installed_on", t(installed.format("%Y-%m-%d").to_string())),
                    ("grid", t(m.code.to_string())),
                ],
            ),
        ));
    }

    // Risk points (安全隐患), four-colour graded; construction and flood
    // risks are zones (polygons).
    let risk_def = builtin::layer(builtin::RISKS).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "risks");
    let mut risks = Vec::with_capacity(scale.risks);
    let categories = [
        ("group_rental", "群租房", 0.2, "公安分局"),
        ("fire", "消防隐患", 0.18, "消防救援大队"),
        ("gas", "燃气隐患", 0.1, "住建局"),
        ("construction", "建筑工地", 0.1, "住建局"),
        ("illegal_building", "违法建设", 0.1, "城管局"),
        ("small_chemical", "小化工", 0.07, "应急管理局"),
        ("hazchem", "危化品", 0.05, "应急管理局"),
        ("dust", "扬尘污染", 0.08, "生态环境局"),
        ("flood", "积水内涝", 0.07, "水务局"),
        ("food", "食品安全", 0.05, "市场监管局"),
    ];
    let weights: Vec<f64> = categories.iter().map(|c| c.2).collect();
    for k in 0..scale.risks {
        let cat = categories[rng.weighted(&weights)];
        let m = &nodes[micros[rng.below(micros.len())]];
        let (i, j) = random_cell(&mut rng, &m.rect);
        let geom = if matches!(cat.0, "construction" | "flood") {
            let (u0, v0) = (rng.range(0.1, 0.4), rng.range(0.1, 0.4));
            Geometry::Polygon(lat.quad_in_cell(
                i,
                j,
                (u0, u0 + rng.range(0.3, 0.5)),
                (v0, v0 + rng.range(0.3, 0.5)),
            ))
        } else {
            Geometry::Point(Point(lat.point_in_cell(
                i,
                j,
                rng.range(0.1, 0.9),
                rng.range(0.1, 0.9),
            )))
        };
        let level = rng.weighted(&[0.04, 0.14, 0.32, 0.5]) as i64 + 1;
        let status = ["rectifying", "monitoring", "rectified"][rng.weighted(&[0.3, 0.45, 0.25])];
        let inspected = reference - Duration::minutes(rng.int(60, 90 * 24 * 60));
        risks.push((
            geom,
            props(
                &risk_def,
                vec![
                    (
                        "name",
                        t(format!(
                            "{}{}点位{:04}",
                            nodes[m.parent.unwrap_or(0)].name,
                            cat.1,
                            k + 1
                        )),
                    ),
                    ("category", t(cat.0)),
                    ("level", Value::Int(level)),
                    ("status", t(status)),
                    ("department", t(cat.3)),
                    (
                        "inspected_at",
                        t(crate::model::value::format_utc(inspected)),
                    ),
                    ("grid", t(m.code.to_string())),
                ],
            ),
        ));
    }

    // Buildings (楼宇经济): commercial towers in the urban ring, one per cell.
    let bld_def = builtin::layer(builtin::BUILDINGS).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "buildings");
    let mut buildings = Vec::with_capacity(scale.buildings);
    let urban_rows = ((lat.nr as f64 * 0.35) as usize).max(1);
    let mut taken = std::collections::HashSet::new();
    let mut tries = 0;
    while buildings.len() < scale.buildings && tries < scale.buildings * 20 {
        tries += 1;
        // Denser towards the core.
        let i = ((rng.f64().powf(1.6)) * urban_rows as f64) as usize;
        let j = rng.below(lat.nt);
        if !taken.insert((i, j)) {
            continue;
        }
        let (u0, v0) = (rng.range(0.15, 0.4), rng.range(0.15, 0.4));
        let poly = lat.quad_in_cell(
            i,
            j,
            (u0, u0 + rng.range(0.25, 0.45)),
            (v0, v0 + rng.range(0.25, 0.45)),
        );
        let footprint = poly.chamberlain_duquette_unsigned_area();
        let floors = (rng.range(1.0, 3.2).powf(3.5)).round().clamp(4.0, 68.0) as i64;
        let occupancy = (0.55 + 0.25 * rng.normal()).clamp(0.15, 0.99);
        let enterprises = ((floors as f64) * rng.range(1.0, 6.0)).round() as i64;
        let tax = (rng.normal() * 0.9 + 6.5).exp() * (floors as f64 / 10.0);
        let above = ((enterprises as f64) * rng.range(0.0, 0.25)).round() as i64;
        let alert = if occupancy < 0.4 {
            t("空置率高 high vacancy")
        } else if rng.chance(0.05) {
            t("税收下降 tax decline")
        } else {
            Value::Null
        };
        let m = micro_of_cell(i, j);
        let name = format!(
            "{}{}{}",
            ctx.place(&mut rng),
            rng.pick(&ctx.names.building_words),
            rng.pick(&ctx.names.building_suffix)
        );
        buildings.push((
            Geometry::Polygon(poly),
            props(
                &bld_def,
                vec![
                    ("name", t(name)),
                    ("floors", Value::Int(floors)),
                    (
                        "height_m",
                        Value::Float((floors as f64 * 3.6 * 10.0).round() / 10.0),
                    ),
                    ("area_m2", Value::Float((footprint * floors as f64).round())),
                    (
                        "occupancy_rate",
                        Value::Float((occupancy * 1000.0).round() / 1000.0),
                    ),
                    ("enterprises", Value::Int(enterprises)),
                    ("tax_10k_cny", Value::Float((tax * 10.0).round() / 10.0)),
                    ("above_scale", Value::Int(above)),
                    ("alert", alert),
                    ("grid", t(m.code.to_string())),
                ],
            ),
        ));
    }

    // Work orders over six months, where people live.
    let events = gen_events(scale, seed, reference, &lat, &nodes, micros)?;

    // Roads along street and community boundaries; a river along the
    // C's first edge.
    let road_def = builtin::layer(builtin::ROADS).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "roads");
    let mut roads = Vec::new();
    for (level, class) in [
        (0, "expressway"),
        (1, "arterial"),
        (2, "secondary"),
        (3, "branch"),
    ] {
        for c in &cuts_by_level[level] {
            let urban = if c.along_ring {
                (c.at as f64) < urban_limit
            } else {
                true
            };
            if level == 3 && !urban {
                continue;
            }
            let suffix = match class {
                "expressway" => "快速路".to_string(),
                "arterial" => "大道".to_string(),
                _ => rng.pick(&ctx.names.road_suffix).clone(),
            };
            roads.push((
                Geometry::LineString(lat.cut_line(c)),
                props(
                    &road_def,
                    vec![
                        ("name", t(format!("{}{suffix}", ctx.place(&mut rng)))),
                        ("class", t(class)),
                    ],
                ),
            ));
        }
    }
    let water_def = builtin::layer(builtin::WATER).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut bank: Vec<Coord> = (0..=lat.nr).map(|i| lat.v(i, 0)).collect();
    let mut far = lat.outside_ray(2.4, 0.5);
    far.reverse();
    bank.extend(far);
    bank.push(bank[0]);
    let river = Polygon::new(LineString(bank), vec![]).orient(geo::orient::Direction::Default);
    let water = vec![(
        Geometry::Polygon(river),
        props(&water_def, vec![("name", t("示范河 (虚构)"))]),
    )];

    let layer = |name: &str, features| -> anyhow::Result<GenLayer> {
        Ok(GenLayer {
            def: builtin::layer(name).ok_or_else(|| anyhow::anyhow!("schema {name}"))?,
            features,
        })
    };
    Ok(Generated {
        layers: vec![
            layer(builtin::GRIDS, grids)?,
            layer(builtin::ADDRESSES, addresses)?,
            layer(builtin::CAMERAS, cameras)?,
            layer(builtin::RISKS, risks)?,
            layer(builtin::BUILDINGS, buildings)?,
            layer(builtin::EVENTS, events)?,
            layer(builtin::ROADS, roads)?,
            layer(builtin::WATER, water)?,
        ],
        seed,
        scale: scale.name.to_string(),
    })
}

fn gen_events(
    scale: &Scale,
    seed: u64,
    reference: DateTime<Utc>,
    lat: &Lattice,
    nodes: &[Node],
    micros: &[usize],
) -> anyhow::Result<Vec<(Geometry, Vec<Value>)>> {
    let def = builtin::layer(builtin::EVENTS).ok_or_else(|| anyhow::anyhow!("schema"))?;
    let mut rng = Rng::new(seed, "events");
    // source, weight, categories (code, label, department, hours to deadline)
    type Cat = (&'static str, &'static str, &'static str, i64);
    let sources: [(&str, f64, &[Cat]); 6] = [
        (
            "hotline_12345",
            0.35,
            &[
                ("noise", "噪音扰民", "城管局", 72),
                ("sanitation", "环境卫生", "城管局", 48),
                ("municipal", "市政设施损坏", "住建局", 120),
                ("property_dispute", "物业纠纷", "住建局", 168),
                ("illegal_parking", "违章停车", "交通运输局", 24),
            ],
        ),
        (
            "grid_report",
            0.3,
            &[
                ("street_vending", "占道经营", "城管局", 24),
                ("sanitation", "环境卫生", "城管局", 48),
                ("fire_hazard", "消防隐患", "消防救援大队", 24),
                ("illegal_construction", "违法建设", "城管局", 168),
                ("neighbour_dispute", "邻里纠纷", "街道办事处", 72),
            ],
        ),
        (
            "police_110",
            0.12,
            &[
                ("public_security", "治安警情", "公安分局", 4),
                ("neighbour_dispute", "邻里纠纷", "公安分局", 24),
                ("traffic", "交通事故", "公安分局", 6),
            ],
        ),
        (
            "camera_alarm",
            0.1,
            &[
                ("crowd", "人员聚集", "公安分局", 2),
                ("illegal_parking", "违章停车", "交通运输局", 12),
                ("street_vending", "占道经营", "城管局", 12),
                ("fire_hazard", "烟火识别", "消防救援大队", 2),
            ],
        ),
        (
            "resident_app",
            0.1,
            &[
                ("sanitation", "环境卫生", "城管局", 72),
                ("municipal", "市政设施损坏", "住建局", 120),
                ("environment", "污染投诉", "生态环境局", 72),
            ],
        ),
        (
            "petition",
            0.03,
            &[("petition", "信访诉求", "街道办事处", 360)],
        ),
    ];
    let source_w: Vec<f64> = sources.iter().map(|s| s.1).collect();
    // Work orders follow people: pick micro-grids by households.
    let cumulative: Vec<f64> = micros
        .iter()
        .scan(0.0, |acc, &m| {
            *acc += nodes[m].households as f64;
            Some(*acc)
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(1.0);
    let hour_w: Vec<f64> = (0..24)
        .map(|h| match h {
            0..=5 => 0.2,
            6..=7 => 0.6,
            8..=11 => 1.6,
            12..=13 => 1.0,
            14..=17 => 1.5,
            18..=21 => 1.1,
            _ => 0.5,
        })
        .collect();
    let mut out = Vec::with_capacity(scale.events);
    for _ in 0..scale.events {
        let x = rng.f64() * total;
        let mi = cumulative
            .partition_point(|c| *c <= x)
            .min(micros.len() - 1);
        let m = &nodes[micros[mi]];
        let (i, j) = (
            m.rect.i0 + rng.below(m.rect.di()),
            m.rect.j0 + rng.below(m.rect.dj()),
        );
        let c = lat.point_in_cell(i, j, rng.range(0.08, 0.92), rng.range(0.08, 0.92));
        let src = &sources[rng.weighted(&source_w)];
        let cat = src.2[rng.below(src.2.len())];
        // Local (UTC+8) hour of day, shaped like a working day.
        let day = rng.int(0, 182);
        let hour = rng.weighted(&hour_w) as i64;
        let created = reference - Duration::days(day + 1)
            + Duration::hours(hour - 8)
            + Duration::seconds(rng.int(0, 3599));
        let deadline = created + Duration::hours(cat.3);
        let age_h = (reference - created).num_hours();
        let (status, closed) = if age_h > cat.3 * 2 || (age_h > cat.3 && rng.chance(0.9)) {
            if rng.chance(0.015) {
                // Never closed: open and past its deadline (overdue is
                // derived from the deadline, not stored).
                ("processing", None)
            } else {
                // Most close on time; some late.
                let frac = if rng.chance(0.9) {
                    rng.range(0.05, 0.95)
                } else {
                    rng.range(1.05, 1.8)
                };
                (
                    "closed",
                    Some(created + Duration::seconds((cat.3 as f64 * 3600.0 * frac) as i64)),
                )
            }
        } else if reference > deadline {
            ("processing", None)
        } else {
            let s = ["new", "dispatched", "processing"][rng.weighted(&[0.2, 0.3, 0.5])];
            (s, None)
        };
        let fmt = crate::model::value::format_utc;
        out.push((
            created,
            Geometry::Point(Point(c)),
            props(
                &def,
                vec![
                    (
                        "title",
                        t(format!(
                            "{}：{}附近",
                            cat.1,
                            nodes[m.parent.unwrap_or(0)].name
                        )),
                    ),
                    ("source", t(src.0)),
                    ("category", t(cat.0)),
                    ("status", t(status)),
                    ("created_at", t(fmt(created))),
                    ("deadline", t(fmt(deadline))),
                    (
                        "closed_at",
                        closed.map(|c| t(fmt(c))).unwrap_or(Value::Null),
                    ),
                    ("department", t(cat.2)),
                    ("grid", t(m.code.to_string())),
                ],
            ),
        ));
    }
    // In time order, numbered like a work-order system would.
    out.sort_by_key(|e| e.0);
    let ext = def
        .prop_index("ext_id")
        .ok_or_else(|| anyhow::anyhow!("schema"))?;
    Ok(out
        .into_iter()
        .enumerate()
        .map(|(n, (created, g, mut p))| {
            p[ext] = t(format!("WO{}{:07}", created.format("%Y%m"), n + 1));
            (g, p)
        })
        .collect())
}

/// Writes a generated demo to a store: one layer at a time, each in one
/// transaction with a summary change-log row. Fails if a layer exists.
pub async fn write(store: &dyn Store, g: Generated) -> anyhow::Result<()> {
    for layer in g.layers {
        let mut cs = ChangeSet::new(
            "onemap demo",
            &format!("demo district, scale {}, seed {}", g.scale, g.seed),
        );
        cs.detail = LogDetail::Summary;
        cs.create.push(layer.def.clone());
        let name = layer.def.name.clone();
        cs.ops = layer
            .features
            .into_iter()
            .map(|(geometry, properties)| Op::Insert {
                layer: name.clone(),
                id: None,
                geometry,
                properties,
            })
            .collect();
        store.apply(&cs).await?;
    }
    store.set_meta("demo_seed", &g.seed.to_string()).await?;
    store.set_meta("demo_scale", &g.scale).await?;
    store
        .set_meta("demo_reference_time", REFERENCE_TIME)
        .await?;
    store.set_meta("datum", "wgs84").await?;
    Ok(())
}
