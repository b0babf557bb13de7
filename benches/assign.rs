//! Criterion: point → grid assignment and index build on the district demo
//! (generated in memory, no store involved).
//!
//! `cargo bench --bench assign`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use onemap::index::{Catalog, LayerIndex, grids::GridTree, representative_point};
use onemap::model::builtin;

fn district() -> Vec<(onemap::model::LayerDef, Vec<onemap::model::Feature>)> {
    let sc = onemap::demo::Scale::parse("district").expect("scale");
    onemap::demo::generate(&sc, 1)
        .and_then(|g| g.into_layers())
        .expect("generate")
}

fn bench(c: &mut Criterion) {
    let layers = district();
    let grids = layers
        .iter()
        .find(|(d, _)| d.name == builtin::GRIDS)
        .map(|(d, f)| LayerIndex::new(d.clone(), f.clone()))
        .expect("grids");
    let tree = GridTree::build(&grids);
    let points: Vec<geo::Point> = layers
        .iter()
        .find(|(d, _)| d.name == builtin::ADDRESSES)
        .map(|(_, f)| {
            f.iter()
                .filter_map(|f| representative_point(&f.geometry))
                .take(10_000)
                .collect()
        })
        .expect("addresses");

    let mut g = c.benchmark_group("assign");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.bench_function("locate 10k address points (1 thread)", |b| {
        b.iter(|| {
            points
                .iter()
                .map(|p| tree.locate(*p))
                .filter(|&n| n != u32::MAX)
                .count()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("catalog");
    g.sample_size(10);
    g.bench_function("build district catalog (index + derive)", |b| {
        b.iter(|| Catalog::build(layers.clone(), 0))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
