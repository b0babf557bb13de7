//! The grid hierarchy in memory: nodes linked parent ↔ children, one R-tree
//! per level of comprehensive grids, and point location.

use super::{Entry, LayerIndex, NO_GRID};
use crate::model::{GridCode, GridLevel};
use geo::{BoundingRect, Geometry, InteriorPoint, Intersects, Point};
use rstar::{RTree, primitives::GeomWithData, primitives::Rectangle};
use std::collections::HashMap;

/// One grid.
pub struct GridNode {
    pub code: GridCode,
    pub level: GridLevel,
    pub name: String,
    /// `kind = dedicated` (专属网格): overlays comprehensive grids, exempt
    /// from the exact-cover rule and from point assignment.
    pub dedicated: bool,
    /// Position of the feature in the `grids` layer.
    pub feature: u32,
    /// Parent node, or [`NO_GRID`].
    pub parent: u32,
    /// Child nodes, by code.
    pub children: Vec<u32>,
    pub geometry: Geometry,
    /// Where the grid's name is drawn: a point inside it.
    pub label: Option<Point>,
}

#[derive(Default)]
pub struct GridTree {
    pub nodes: Vec<GridNode>,
    pub by_code: HashMap<String, u32>,
    /// Comprehensive grids of each level (indexed by `GridLevel::index`).
    levels: [RTree<Entry>; 5],
    dedicated: Vec<u32>,
}

/// True when `p` is inside `g` or on its boundary.
pub fn covers(g: &Geometry, p: &Point) -> bool {
    g.intersects(p)
}

impl GridTree {
    /// Builds the tree from the `grids` layer. Features whose `code` is not a
    /// valid grid code are left out (they can still be drawn, but hold
    /// nothing); the parent is the `parent` property when that grid exists,
    /// else the code's prefix.
    pub fn build(layer: &LayerIndex) -> GridTree {
        let d = &layer.def;
        let text = |f: &crate::model::Feature, k: &str| {
            f.get(d, k).and_then(|v| v.as_str()).map(str::to_string)
        };
        let mut t = GridTree::default();
        for (i, f) in layer.features.iter().enumerate() {
            let Some(code) = text(f, "code").and_then(|c| GridCode::parse(&c).ok()) else {
                continue;
            };
            if t.by_code.contains_key(code.as_str()) {
                tracing::warn!("grid code {code} appears twice; keeping the first");
                continue;
            }
            t.by_code.insert(code.to_string(), t.nodes.len() as u32);
            t.nodes.push(GridNode {
                level: code.level(),
                dedicated: text(f, "kind").as_deref() == Some("dedicated"),
                name: text(f, "name").unwrap_or_default(),
                code,
                feature: i as u32,
                parent: NO_GRID,
                children: Vec::new(),
                label: f.geometry.interior_point(),
                geometry: f.geometry.clone(),
            });
        }
        for n in 0..t.nodes.len() {
            let f = &layer.features[t.nodes[n].feature as usize];
            let declared = text(f, "parent").and_then(|p| t.by_code.get(&p).copied());
            let parent = declared.or_else(|| {
                t.nodes[n]
                    .code
                    .parent()
                    .and_then(|p| t.by_code.get(p.as_str()).copied())
            });
            if let Some(p) = parent {
                t.nodes[n].parent = p;
                t.nodes[p as usize].children.push(n as u32);
            }
        }
        for n in 0..t.nodes.len() {
            let mut ch = std::mem::take(&mut t.nodes[n].children);
            ch.sort_by(|a, b| t.nodes[*a as usize].code.cmp(&t.nodes[*b as usize].code));
            t.nodes[n].children = ch;
        }
        let mut per_level: [Vec<Entry>; 5] = Default::default();
        for (n, node) in t.nodes.iter().enumerate() {
            if node.dedicated {
                t.dedicated.push(n as u32);
                continue;
            }
            if let Some(r) = node.geometry.bounding_rect() {
                per_level[node.level.index()].push(GeomWithData::new(
                    Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]),
                    n as u32,
                ));
            }
        }
        t.levels = per_level.map(RTree::bulk_load);
        t
    }

    pub fn get(&self, code: &str) -> Option<(u32, &GridNode)> {
        self.by_code
            .get(code)
            .map(|&n| (n, &self.nodes[n as usize]))
    }

    /// The comprehensive grid of `level` that holds `p` (smallest code when on
    /// a shared boundary), or [`NO_GRID`].
    pub fn locate_at(&self, level: GridLevel, p: Point) -> u32 {
        self.levels[level.index()]
            .locate_all_at_point(&[p.x(), p.y()])
            .map(|e| e.data)
            .filter(|&n| covers(&self.nodes[n as usize].geometry, &p))
            .min_by(|a, b| {
                self.nodes[*a as usize]
                    .code
                    .cmp(&self.nodes[*b as usize].code)
            })
            .unwrap_or(NO_GRID)
    }

    /// The deepest comprehensive grid that holds `p`, or [`NO_GRID`].
    pub fn locate(&self, p: Point) -> u32 {
        for level in GridLevel::ALL.iter().rev() {
            let n = self.locate_at(*level, p);
            if n != NO_GRID {
                return n;
            }
        }
        NO_GRID
    }

    /// Dedicated grids holding `p`.
    pub fn dedicated_at(&self, p: Point) -> Vec<u32> {
        self.dedicated
            .iter()
            .copied()
            .filter(|&n| covers(&self.nodes[n as usize].geometry, &p))
            .collect()
    }

    /// The chain from the district down to `n` (inclusive).
    pub fn path(&self, n: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cur = n;
        while cur != NO_GRID && out.len() < 8 {
            out.push(cur);
            cur = self.nodes[cur as usize].parent;
        }
        out.reverse();
        out
    }
}
