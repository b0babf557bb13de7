//! The built-in layers (DESIGN §4). Their names and property names are part
//! of the API; imported custom layers take their schema from the file.
//!
//! `grid` on point layers (and `households` on grids) are derived values
//! materialised in the store so that QGIS users see them; the index derives
//! them again at load and is the authority while serving.

use super::{GeomKind, LayerDef, PropDef, PropType as T};

pub const GRIDS: &str = "grids";
pub const ADDRESSES: &str = "addresses";
pub const CAMERAS: &str = "cameras";
pub const RISKS: &str = "risks";
pub const BUILDINGS: &str = "buildings";
pub const EVENTS: &str = "events";
pub const ROADS: &str = "roads";
pub const WATER: &str = "water";

/// The six governance layers, in the order they are listed.
/// Grid edit plans and their draft grids (src/plan): stored like layers,
/// so both stores keep them and their edits reach the change log, but not
/// served as layers.
pub const PLANS: &str = "onemap_plans";
pub const PLAN_GRIDS: &str = "onemap_plan_grids";

/// Layers of the server's own (plans), hidden from the catalog.
pub fn is_internal(name: &str) -> bool {
    name == PLANS || name == PLAN_GRIDS
}

pub const GOVERNANCE: [&str; 6] = [GRIDS, ADDRESSES, CAMERAS, RISKS, BUILDINGS, EVENTS];

fn def(name: &str, title: &str, g: GeomKind, zooms: (u8, u8), props: &[(&str, T)]) -> LayerDef {
    LayerDef {
        name: name.to_string(),
        title: title.to_string(),
        geometry: g,
        properties: props.iter().map(|(n, t)| PropDef::new(n, *t)).collect(),
        minzoom: zooms.0,
        maxzoom: zooms.1,
        declared_crs: "wgs84".to_string(),
    }
}

/// The schema of a built-in layer, or None for a custom name.
pub fn layer(name: &str) -> Option<LayerDef> {
    Some(match name {
        GRIDS => def(
            GRIDS,
            "网格 Grids",
            GeomKind::MultiPolygon,
            (0, 22),
            &[
                ("code", T::Text),
                ("name", T::Text),
                ("level", T::Text),
                ("parent", T::Text),
                ("kind", T::Text),
                ("households", T::Int),
                ("population", T::Int),
                ("staff", T::Text),
                ("phone", T::Text),
            ],
        ),
        ADDRESSES => def(
            ADDRESSES,
            "标准地址 Addresses",
            GeomKind::Point,
            (14, 22),
            &[
                ("address", T::Text),
                ("households", T::Int),
                ("building", T::Int),
                ("grid", T::Text),
            ],
        ),
        CAMERAS => def(
            CAMERAS,
            "视频监控 Cameras",
            GeomKind::Point,
            (11, 22),
            &[
                ("name", T::Text),
                ("kind", T::Text),
                ("status", T::Text),
                ("direction_deg", T::Float),
                ("fov_deg", T::Float),
                ("range_m", T::Float),
                ("installed_on", T::Date),
                ("grid", T::Text),
            ],
        ),
        RISKS => def(
            RISKS,
            "风险隐患 Risk points",
            GeomKind::Geometry,
            (10, 22),
            &[
                ("name", T::Text),
                ("category", T::Text),
                ("level", T::Int),
                ("status", T::Text),
                ("department", T::Text),
                ("inspected_at", T::DateTime),
                ("grid", T::Text),
            ],
        ),
        BUILDINGS => def(
            BUILDINGS,
            "楼宇 Buildings",
            GeomKind::MultiPolygon,
            (12, 22),
            &[
                ("name", T::Text),
                ("floors", T::Int),
                ("height_m", T::Float),
                ("area_m2", T::Float),
                ("occupancy_rate", T::Float),
                ("enterprises", T::Int),
                ("tax_10k_cny", T::Float),
                ("above_scale", T::Int),
                ("alert", T::Text),
                ("grid", T::Text),
            ],
        ),
        EVENTS => def(
            EVENTS,
            "事件工单 Work orders",
            GeomKind::Point,
            (9, 22),
            &[
                ("ext_id", T::Text),
                ("title", T::Text),
                ("source", T::Text),
                ("category", T::Text),
                ("status", T::Text),
                ("created_at", T::DateTime),
                ("deadline", T::DateTime),
                ("closed_at", T::DateTime),
                ("department", T::Text),
                ("grid", T::Text),
            ],
        ),
        ROADS => def(
            ROADS,
            "道路 Roads",
            GeomKind::LineString,
            (9, 22),
            &[("name", T::Text), ("class", T::Text)],
        ),
        WATER => def(
            WATER,
            "水系 Water",
            GeomKind::MultiPolygon,
            (0, 22),
            &[("name", T::Text)],
        ),
        _ => return None,
    })
}

/// Every built-in layer definition.
pub fn all() -> Vec<LayerDef> {
    [
        GRIDS, ADDRESSES, CAMERAS, RISKS, BUILDINGS, EVENTS, ROADS, WATER,
    ]
    .iter()
    .filter_map(|n| layer(n))
    .collect()
}
