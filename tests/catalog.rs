//! Live patches to the catalog give exactly what a rebuild from the same
//! features gives: grid membership, aggregates, lookups and R-tree answers;
//! the previous snapshot is untouched; the clock makes orders overdue.

mod common;

use geo::{Geometry, Point, Rect};
use onemap::demo::{self, rng::Rng};
use onemap::index::{Catalog, Patch};
use onemap::model::{Feature, LayerDef, Value, builtin};
use std::collections::BTreeSet;

fn small() -> Vec<(LayerDef, Vec<Feature>)> {
    demo::generate(&demo::Scale::parse("small").expect("scale"), 5)
        .expect("demo")
        .into_layers()
        .expect("layers")
}

fn set_prop(def: &LayerDef, f: &mut Feature, name: &str, v: Value) {
    let k = def.prop_index(name).expect("property");
    f.properties[k] = v;
}

fn same(a: &Catalog, b: &Catalog) {
    let codes =
        |c: &Catalog| -> Vec<String> { c.grids.nodes.iter().map(|n| n.code.to_string()).collect() };
    assert_eq!(codes(a), codes(b), "grid trees differ");
    assert_eq!(a.stats, b.stats, "aggregates differ");
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        let name = &la.def.name;
        assert_eq!(la.features.len(), lb.features.len(), "{name}");
        assert!(
            la.features.iter().eq(lb.features.iter()),
            "{name}: features"
        );
        assert!(la.grid_of.iter().eq(lb.grid_of.iter()), "{name}: grid_of");
        assert_eq!(la.tree.size(), lb.tree.size(), "{name}: tree size");
        if let Some(bb) = lb.bbox {
            let (w, h) = (bb.width() / 3.0, bb.height() / 3.0);
            for k in 0..9 {
                let x = bb.min().x + w * f64::from(k % 3);
                let y = bb.min().y + h * f64::from(k / 3);
                let r = Rect::new((x, y), (x + w, y + h));
                let ids = |l: &onemap::index::LayerIndex| -> BTreeSet<i64> {
                    l.in_rect(r).map(|i| l.features[i as usize].id).collect()
                };
                assert_eq!(ids(la), ids(lb), "{name}: R-tree answers");
            }
        }
    }
}

#[test]
fn patches_equal_a_rebuild() {
    let layers = small();
    let now = onemap::model::value::parse_instant("2026-11-15T00:00:00Z").unwrap();
    let base = Catalog::build_at(layers.clone(), 10, now);
    let ev = builtin::layer(builtin::EVENTS).unwrap();
    let cam = builtin::layer(builtin::CAMERAS).unwrap();
    let events = base.layer(builtin::EVENTS).unwrap();
    let bbox = events.bbox.unwrap();
    let mut rng = Rng::new(9, "catalog-test");
    let mut patches = Vec::new();
    let mut next_id = events.features.last().unwrap().id + 1;
    for k in 0..300 {
        match k % 6 {
            // New orders at random places (some outside every grid).
            0 | 1 => {
                let mut f = events.features[rng.below(events.features.len())].clone();
                f.id = next_id;
                next_id += 1;
                f.version = 1;
                let p = Point::new(
                    rng.range(bbox.min().x - 0.01, bbox.max().x),
                    rng.range(bbox.min().y, bbox.max().y),
                );
                f.geometry = Geometry::Point(p);
                set_prop(&ev, &mut f, "status", Value::text("new"));
                set_prop(&ev, &mut f, "deadline", Value::text("2026-11-14T00:00:00Z"));
                patches.push(Patch {
                    layer: builtin::EVENTS.into(),
                    id: f.id,
                    after: Some(f),
                });
            }
            // Status changes (closing some).
            2 | 3 => {
                let mut f = events.features[rng.below(events.features.len())].clone();
                f.version += 1;
                let s = ["dispatched", "processing", "closed"][rng.below(3)];
                set_prop(&ev, &mut f, "status", Value::text(s));
                patches.push(Patch {
                    layer: builtin::EVENTS.into(),
                    id: f.id,
                    after: Some(f),
                });
            }
            // A camera moved and its status flipped.
            4 => {
                let cams = base.layer(builtin::CAMERAS).unwrap();
                let mut f = cams.features[rng.below(cams.features.len())].clone();
                f.version += 1;
                if let Geometry::Point(p) = &mut f.geometry {
                    *p = Point::new(p.x() + 0.002, p.y() - 0.001);
                }
                set_prop(&cam, &mut f, "status", Value::text("offline"));
                patches.push(Patch {
                    layer: builtin::CAMERAS.into(),
                    id: f.id,
                    after: Some(f),
                });
            }
            // An occasional delete.
            _ => {
                let f = &events.features[rng.below(events.features.len())];
                patches.push(Patch {
                    layer: builtin::EVENTS.into(),
                    id: f.id,
                    after: None,
                });
            }
        }
    }
    // Applied in several batches, as the live writer does.
    let mut live = base.clone();
    for chunk in patches.chunks(37) {
        live = live.apply(chunk, live.seq + 1);
    }
    // The same end state built from scratch.
    let mut expect = layers.clone();
    for p in &patches {
        let (_, v) = expect.iter_mut().find(|(d, _)| d.name == p.layer).unwrap();
        let at = v.partition_point(|x| x.id < p.id);
        let present = v.get(at).is_some_and(|x| x.id == p.id);
        match (&p.after, present) {
            (Some(f), true) => v[at] = f.clone(),
            (Some(f), false) => v.insert(at, f.clone()),
            (None, true) => {
                v.remove(at);
            }
            (None, false) => {}
        }
    }
    let rebuilt = Catalog::build_at(expect, live.seq, now);
    same(&live, &rebuilt);
    // The first snapshot is what it was.
    same(&base, &Catalog::build_at(layers, 10, now));
}

#[test]
fn the_clock_makes_orders_overdue() {
    let layers = small();
    let t0 = onemap::model::value::parse_instant("2026-11-15T00:00:00Z").unwrap();
    let base = Catalog::build_at(layers.clone(), 1, t0);
    let week = 7 * onemap::model::value::DAY_MS;
    let (later, became) = base.advance_clock(t0 + week);
    assert!(!became.is_empty(), "no order passed its deadline in a week");
    let root = |c: &Catalog| {
        c.grids
            .nodes
            .iter()
            .position(|n| n.parent == onemap::index::NO_GRID)
            .map(|i| c.stats[i].events_overdue)
            .unwrap()
    };
    assert_eq!(root(&later), root(&base) + became.len() as u64);
    same(&later, &Catalog::build_at(layers, 1, t0 + week));
}

/// Grid edits (a shared vertex moved far enough to move addresses, a
/// micro-grid deleted, one re-coded) patched in equal a rebuild.
#[test]
fn grid_patches_equal_a_rebuild() {
    let layers = small();
    let now = onemap::model::value::parse_instant("2026-11-15T00:00:00Z").unwrap();
    let base = Catalog::build_at(layers.clone(), 10, now);
    let gl = base.layer(builtin::GRIDS).unwrap();
    let def = gl.def.clone();
    // A vertex shared by micro-grids inside one grid, moved 40% of the way
    // to the middle of one of them.
    let grid = base
        .grids
        .nodes
        .iter()
        .find(|n| n.level == onemap::model::GridLevel::Grid && n.children.len() >= 4)
        .unwrap();
    let kids: Vec<&onemap::index::grids::GridNode> = grid
        .children
        .iter()
        .map(|&c| &base.grids.nodes[c as usize])
        .collect();
    let v = common::inner_shared_vertex(&base, grid).expect("an inner shared vertex");
    let target = kids
        .iter()
        .find(|k| onemap::plan::topo::touches_point(&onemap::plan::to_multi(&k.geometry), v, 0.0))
        .unwrap();
    let c = geo::InteriorPoint::interior_point(&target.geometry).unwrap();
    let to = geo::Coord {
        x: v.x + 0.4 * (c.x() - v.x),
        y: v.y + 0.4 * (c.y() - v.y),
    };
    let mut patches = Vec::new();
    for k in &kids {
        let mut m = onemap::plan::to_multi(&k.geometry);
        if onemap::plan::topo::move_point(&mut m, v, to, 0.01) {
            let mut f = gl.features[k.feature as usize].clone();
            f.version += 1;
            f.geometry = Geometry::MultiPolygon(m);
            patches.push(Patch {
                layer: builtin::GRIDS.into(),
                id: f.id,
                after: Some(f),
            });
        }
    }
    assert!(patches.len() >= 2);
    // Another grid's micro-grids: one deleted, one re-coded (new feature).
    let other = base
        .grids
        .nodes
        .iter()
        .rev()
        .find(|n| n.level == onemap::model::GridLevel::Grid && n.children.len() >= 3)
        .unwrap();
    let a = &base.grids.nodes[other.children[0] as usize];
    let b = &base.grids.nodes[other.children[1] as usize];
    patches.push(Patch {
        layer: builtin::GRIDS.into(),
        id: gl.features[a.feature as usize].id,
        after: None,
    });
    let fb = gl.features[b.feature as usize].clone();
    patches.push(Patch {
        layer: builtin::GRIDS.into(),
        id: fb.id,
        after: None,
    });
    let mut nb = fb.clone();
    nb.id = gl.features.last().unwrap().id + 1;
    nb.version = 1;
    let code = format!("{}999", other.code);
    set_prop(&def, &mut nb, "code", Value::text(&code));
    patches.push(Patch {
        layer: builtin::GRIDS.into(),
        id: nb.id,
        after: Some(nb),
    });
    // And an ordinary patch in the same batch.
    let mut cam = base.layer(builtin::CAMERAS).unwrap().features[0].clone();
    cam.version += 1;
    patches.push(Patch {
        layer: builtin::CAMERAS.into(),
        id: cam.id,
        after: Some(cam),
    });

    let live = base.apply(&patches, 11);
    let mut expect = layers.clone();
    for p in &patches {
        let (_, v) = expect.iter_mut().find(|(d, _)| d.name == p.layer).unwrap();
        let at = v.partition_point(|x| x.id < p.id);
        let present = v.get(at).is_some_and(|x| x.id == p.id);
        match (&p.after, present) {
            (Some(f), true) => v[at] = f.clone(),
            (Some(f), false) => v.insert(at, f.clone()),
            (None, true) => {
                v.remove(at);
            }
            (None, false) => {}
        }
    }
    let rebuilt = Catalog::build_at(expect, 11, now);
    same(&live, &rebuilt);
    assert!(live.grids.get(&code).is_some());
    // Something really moved: some address now has another grid.
    let (la, lb) = (
        base.layer(builtin::ADDRESSES).unwrap(),
        live.layer(builtin::ADDRESSES).unwrap(),
    );
    let code_of = |c: &Catalog, n: u32| {
        (n != onemap::index::NO_GRID).then(|| c.grids.nodes[n as usize].code.to_string())
    };
    let moved = (0..la.features.len())
        .filter(|&i| code_of(&base, la.grid_node(i)) != code_of(&live, lb.grid_node(i)))
        .count();
    assert!(moved > 0, "the test should move addresses between grids");
}
