//! An area scope: the grid subtrees a scoped account or token may see and
//! change. A feature is inside when its derived grid (the deepest
//! comprehensive grid holding it) lies in one of the subtrees; a grid when
//! its code does. Built once per request from the catalog snapshot.

use super::{Catalog, LayerIndex, NO_GRID};
use crate::model::builtin;

#[derive(Debug)]
pub struct Scope {
    codes: Vec<String>,
    /// By node index.
    nodes: Vec<bool>,
    /// By feature position in the `grids` layer.
    grid_features: Vec<bool>,
}

impl Scope {
    /// The scope of `codes`; `None` for an unscoped principal (empty list).
    pub fn of(cat: &Catalog, codes: &[String]) -> Option<Scope> {
        if codes.is_empty() {
            return None;
        }
        let inside = |c: &str| codes.iter().any(|s| c.starts_with(s.as_str()));
        let nodes: Vec<bool> = cat
            .grids
            .nodes
            .iter()
            .map(|n| inside(n.code.as_str()))
            .collect();
        let n_features = cat.layer(builtin::GRIDS).map_or(0, |l| l.features.len());
        let mut grid_features = vec![false; n_features];
        for (k, n) in cat.grids.nodes.iter().enumerate() {
            if nodes[k]
                && let Some(slot) = grid_features.get_mut(n.feature as usize)
            {
                *slot = true;
            }
        }
        Some(Scope {
            codes: codes.to_vec(),
            nodes,
            grid_features,
        })
    }

    /// Whether feature `i` of `layer` lies inside.
    pub fn holds(&self, layer: &LayerIndex, i: u32) -> bool {
        if layer.def.name == builtin::GRIDS {
            return self.grid_features.get(i as usize).copied().unwrap_or(false);
        }
        match layer.grid_of.get(i as usize) {
            Some(&g) if g != NO_GRID => self.nodes.get(g as usize).copied().unwrap_or(false),
            _ => false,
        }
    }

    /// Whether grid `code` lies inside.
    pub fn code(&self, code: &str) -> bool {
        self.codes.iter().any(|s| code.starts_with(s.as_str()))
    }

    /// Whether node `n` lies inside.
    pub fn node(&self, n: u32) -> bool {
        self.nodes.get(n as usize).copied().unwrap_or(false)
    }

    pub fn codes(&self) -> &[String] {
        &self.codes
    }

    /// How many features of `layer` lie inside, and their bounding box (a
    /// pass over the layer, with work checkpoints).
    pub fn extent(&self, layer: &LayerIndex) -> (usize, Option<geo::Rect>) {
        use geo::BoundingRect;
        let mut n = 0usize;
        let mut bbox: Option<geo::Rect> = None;
        for (i, f) in layer.features.iter().enumerate() {
            crate::work::checkpoint();
            if !self.holds(layer, i as u32) {
                continue;
            }
            n += 1;
            if let Some(r) = f.geometry.bounding_rect() {
                bbox = Some(bbox.map_or(r, |b| super::rect_union(b, r)));
            }
        }
        (n, bbox)
    }
}
