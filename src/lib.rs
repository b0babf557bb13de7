//! onemap (一张图): a GIS server and web map for grassroots-governance
//! command centres. See ARCHITECTURE.md for the map of the code.

pub mod api;
pub mod app;
pub mod auth;
pub mod demo;
pub mod import;
pub mod index;
pub mod live;
pub mod model;
pub mod plan;
pub mod query;
pub mod store;
pub mod tiles;
pub mod work;
