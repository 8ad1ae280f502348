//! Simulator speed: events processed per second of wall time.
//!
//! `sim/steady_100_nodes_20s` runs the `steady` scenario for 100 nodes over
//! 20 virtual seconds (about 35,000 events: deliveries, timers, checks) and
//! reports throughput in events. Run with `cargo bench -p roster --bench sim`.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use roster_sim::{RunSpec, run};

fn spec() -> RunSpec {
    RunSpec {
        scenario: "steady".into(),
        nodes: 100,
        seed: 1,
        duration: Some(Duration::from_secs(20)),
        loss: None,
        ..RunSpec::default()
    }
}

fn bench(c: &mut Criterion) {
    let events = run(&spec()).expect("valid spec").report.events;
    let mut g = c.benchmark_group("sim");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(events));
    g.bench_function("steady_100_nodes_20s", |b| {
        b.iter(|| run(&spec()).expect("valid spec").report.events)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
