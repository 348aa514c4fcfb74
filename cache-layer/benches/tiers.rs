//! L2 and L3 hits against raw reads of the same bytes: `RedisTier::get` vs a redis-rs
//! `GET`, `DiskTier::get` vs a redb read.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_layer::backend::disk::DiskTier;
use cache_layer::backend::redis::RedisTier;
use cache_layer::backend::{EntryMeta, Stored, Tier};
use criterion::{Criterion, criterion_group, criterion_main};
use redb::TableDefinition;
use reliability_core::harness::RedisServer;

fn entry() -> Stored<Bytes> {
    // 1 KiB that does not compress, so both sides move the same bytes.
    let value: Vec<u8> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    Stored {
        value: Bytes::from(value),
        meta: EntryMeta {
            stored_at: SystemTime::now(),
            ttl: Duration::from_secs(3600),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::from_secs(3600),
            fetch_cost: Duration::ZERO,
            negative: false,
            tags: Vec::new(),
        },
    }
}

fn l2(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        eprintln!("redis-server not found: L2 bench skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = server.config().key_prefix("bench");
    let tier = rt.block_on(RedisTier::connect(&config)).unwrap();
    rt.block_on(Tier::set(&tier, "hot", entry())).unwrap();
    let redis_key = tier.redis_key("hot");
    let conn = rt.block_on(config.connect()).unwrap();
    let mut g = c.benchmark_group("l2_hit");
    g.bench_function("raw_redis_get", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            let key = redis_key.clone();
            async move {
                let v: Vec<u8> = redis::AsyncCommands::get(&mut conn, key).await.unwrap();
                black_box(v)
            }
        })
    });
    g.bench_function("redis_tier_get", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(tier.get("hot").await.unwrap()) })
    });
    g.finish();
}

fn l3(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.redb");
    let mut g = c.benchmark_group("l3_hit");
    {
        let tier = DiskTier::open(&path, 64 << 20).unwrap();
        tier.set_blocking("hot", &entry()).unwrap();
        g.bench_function("disk_tier_get", |b| {
            b.iter(|| black_box(tier.get_blocking("hot").unwrap()))
        });
    }
    let db = redb::Database::create(&path).unwrap();
    let table: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
    g.bench_function("raw_redb_read", |b| {
        b.iter(|| {
            let tx = db.begin_read().unwrap();
            let t = tx.open_table(table).unwrap();
            black_box(t.get("hot").unwrap().map(|v| v.value().to_vec()))
        })
    });
    g.finish();
}

criterion_group!(benches, l2, l3);
criterion_main!(benches);
