#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! The cost of one routing decision: locating an address in the shipped country database and
//! choosing the nearest available edge of a three-edge fleet, as the control APIs do for every
//! upload URL (the heartbeats are read from the database separately). `cargo bench --bench geo`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use uplink::geo::{Coordinates, Edge, Fleet, Health, Locator};

fn fleet() -> (Fleet, HashMap<String, Health>) {
    let edge = |name: &str, lat, lon| Edge {
        name: name.into(),
        region: name.into(),
        at: Coordinates::new(lat, lon).unwrap(),
        url: format!("https://{name}.example.com"),
        h3_url: None,
        capacity: 1000,
    };
    let edges = vec![
        edge("fra", 50.11, 8.68),
        edge("iad", 38.95, -77.45),
        edge("nrt", 35.77, 140.39),
    ];
    let health = edges
        .iter()
        .map(|e| {
            let h = Health {
                seen_ms: 1_000,
                active_uploads: 10,
                spool_free_bytes: 1 << 40,
                draining: false,
            };
            (e.name.clone(), h)
        })
        .collect();
    (Fleet::new(edges, "fra", 30_000, 1 << 30).unwrap(), health)
}

fn routing(c: &mut Criterion) {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/geo-whois-asn-country.mmdb");
    let locator = Locator::open(&db).unwrap();
    let (fleet, health) = fleet();
    let settings = uplink::config::FleetSettings {
        fleet,
        geoip_database: db.clone(),
        trusted_proxies: Vec::new(),
        region_urls: Default::default(),
        edge_lost_after: std::time::Duration::from_secs(120),
    };
    let addresses: Vec<IpAddr> = ["80.128.0.1", "73.0.0.1", "153.128.0.1", "2003::1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let mut group = c.benchmark_group("geo");
    group.bench_function("lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            black_box(locator.locate(addresses[i]))
        });
    });
    group.bench_function("lookup_and_choose", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            let (_, choice) = uplink::origin::routing::choose(
                &settings,
                &locator,
                &health,
                Some(addresses[i]),
                2_000,
            );
            black_box(choice.edge.name.len())
        });
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
