//! API key lookup: a presented key is hashed (SHA-256) and looked up by its
//! digest, so the cost must not depend on the number of keys (10 vs 100,000),
//! nor on whether the key is known.
//!   cargo bench --bench auth

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use tsrelay::auth::KeyStore;
use tsrelay::auth::keys::{KeySpec, KeysFile, Scope, hash_key, to_hex};

fn store(n: usize) -> (std::sync::Arc<KeyStore>, Vec<String>) {
    let keys: Vec<String> = (0..n).map(|i| format!("tsr_{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15)).collect();
    let file = KeysFile {
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeySpec {
                name: format!("key-{i}"),
                sha256: to_hex(&hash_key(k.as_bytes())),
                scopes: vec![Scope::Write],
                pipelines: Vec::new(),
                samples_per_second: Some(1_000_000),
                samples_burst: None,
                requests_per_second: None,
                requests_burst: None,
            })
            .collect(),
    };
    (KeyStore::from_file(Path::new("bench.yaml"), &file), keys)
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth_lookup");
    for n in [10usize, 100_000] {
        let (store, keys) = store(n);
        let known = keys[n / 2].clone();
        g.bench_function(format!("known_key_of_{n}"), |b| {
            b.iter(|| black_box(store.lookup(black_box(known.as_bytes())).is_some()))
        });
        let unknown = format!("tsr_{:064x}", u128::MAX);
        g.bench_function(format!("unknown_key_of_{n}"), |b| {
            b.iter(|| black_box(store.lookup(black_box(unknown.as_bytes())).is_some()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = lookup
}
criterion_main!(benches);
