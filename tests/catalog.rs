//! Live patches to the catalog give exactly what a rebuild from the same
//! features gives: grid membership, aggregates, lookups and R-tree answers;
//! the previous snapshot is untouched; the clock makes orders overdue.

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
