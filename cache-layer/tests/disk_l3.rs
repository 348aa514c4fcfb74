//! L3 on disk: warm start after a restart, the size bound, corrupt entries dropped, hot
//! keys saved, and a crash test (a child process killed with SIGKILL mid-write, 50 times).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cache_layer::backend::disk::DiskTier;
use cache_layer::backend::{EntryMeta, Stored};
use cache_layer::codec::BytesCodec;
use cache_layer::{CacheHandle, CacheLayer};
use common::{Key, Upstream, key, secs, u64_codec};
use rand::Rng;
use redb::ReadableTable;
use tower::ServiceExt;

/// Opens the store, waiting for a previous holder in this process to let go of it.
fn open(path: &Path, max: u64) -> DiskTier {
    let start = Instant::now();
    loop {
        match DiskTier::open(path, max) {
            Ok(t) => return t,
            Err(e) if start.elapsed() < secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn entry(value: Vec<u8>) -> Stored<Bytes> {
    Stored {
        value: Bytes::from(value),
        meta: EntryMeta {
            stored_at: SystemTime::now(),
            ttl: secs(600),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: secs(600),
            fetch_cost: Duration::ZERO,
            negative: false,
            tags: vec!["t".into()],
        },
    }
}

/// Polls `check` until it holds (10 s at most: a deadline, never a barrier).
async fn wait_for<F: Fn() -> bool>(what: &str, check: F) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn warm_start_serves_hits_with_no_upstream_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l3.redb");
    let first = Upstream::default();
    {
        let layer = CacheLayer::builder(key as Key)
            .ttl(secs(60))
            .l3(open(&path, 1 << 20), u64_codec())
            .build()
            .unwrap();
        let handle: CacheHandle<u64> = layer.handle();
        let svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service(first.service::<String>(Duration::ZERO));
        for i in 0..10 {
            svc.clone().oneshot(format!("k{i}")).await.unwrap();
        }
        for _ in 0..3 {
            svc.clone().oneshot("k7".to_owned()).await.unwrap();
        }
        handle.save_hot_keys(2);
        // One writer thread drains the queue in order, and the hot-key set was queued
        // after the ten entries: once it is readable on disk, so is every entry.
        wait_for("the queued writes, hot keys last", || {
            handle.saved_hot_keys().first().map(String::as_str) == Some("k7")
        })
        .await;
    }
    // A new process (a new cache on the same file): hits at once.
    let second = Upstream::default();
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(60))
        .l3(open(&path, 1 << 20), u64_codec())
        .build()
        .unwrap();
    let handle = layer.handle();
    assert_eq!(handle.saved_hot_keys()[0], "k7", "the hot-key set survived");
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(second.service::<String>(Duration::ZERO));
    for i in 0..10 {
        let v = svc.clone().oneshot(format!("k{i}")).await.unwrap();
        assert_eq!(v, i + 1);
    }
    assert_eq!(second.calls(), 0, "every answer came from disk");
    assert_eq!(handle.stats().l3_hits, 10);
    assert_eq!(handle.snapshot().levels.last().unwrap().level, "l3");
}

#[test]
fn writing_ten_times_the_bound_keeps_the_store_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bound.redb");
    const MAX: u64 = 256 << 10;
    let tier = DiskTier::open(&path, MAX).unwrap();
    let mut rng = rand::rng();
    for i in 0..(10 * MAX / 1024) {
        let value: Vec<u8> = (0..1024).map(|_| rng.random()).collect();
        tier.set_blocking(&format!("k{i}"), &entry(value)).unwrap();
        assert!(tier.live_bytes() <= MAX, "live bytes {}", tier.live_bytes());
    }
    let file = std::fs::metadata(&path).unwrap().len();
    // redb reuses freed pages: the file stays a small multiple of the bound.
    assert!(file < 8 * MAX + (4 << 20), "file of {file} bytes");
    // The newest entries survived the collections.
    let last = format!("k{}", 10 * MAX / 1024 - 1);
    assert!(tier.get_blocking(&last).unwrap().is_some());
}

#[test]
fn corrupt_entries_are_dropped_and_counted_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.redb");
    {
        let tier = DiskTier::open(&path, 1 << 20).unwrap();
        tier.set_blocking("good", &entry(b"fine".to_vec())).unwrap();
    }
    {
        let db = redb::Database::create(&path).unwrap();
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("entries");
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            let mut blob = t.get("good").unwrap().unwrap().value().to_vec();
            let last = blob.len() - 10;
            blob[last] ^= 0x40;
            t.insert("bad", blob.as_slice()).unwrap();
            t.insert("torn", &b"RC\x01\x00\x00"[..]).unwrap();
        }
        tx.commit().unwrap();
    }
    let tier = DiskTier::open(&path, 1 << 20).unwrap();
    assert_eq!(tier.corrupt_dropped(), 2);
    assert!(tier.get_blocking("bad").unwrap().is_none());
    assert!(tier.get_blocking("torn").unwrap().is_none());
    assert_eq!(tier.get_blocking("good").unwrap().unwrap().value, "fine");
}

fn value_of(key: &str) -> Vec<u8> {
    key.as_bytes().iter().cycle().take(3000).copied().collect()
}

/// Keys the crash child writes in each batch before it flushes and reports it.
const BATCH: usize = 8;

/// The child side of the crash test (run only by the parent): a cache with L3 that puts
/// batches of keys, flushes each (the flush resolves once the batch is committed) and
/// then reports it on stdout, `committed <batch> <key> <key>...`, before starting the
/// next, until killed.
#[test]
#[ignore = "run by crash_test_50_kills as a child process"]
fn crash_child_writer() {
    use std::io::Write;
    let Ok(path) = std::env::var("CACHE_L3_CRASH_PATH") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let layer = CacheLayer::builder(key as Key)
            .ttl(secs(600))
            .l3(DiskTier::open(&path, 4 << 20).unwrap(), BytesCodec)
            .build()
            .unwrap();
        let handle: CacheHandle<Bytes> = layer.handle();
        let mut rng = rand::rng();
        let mut out = std::io::stdout();
        for batch in 0u64.. {
            let keys: Vec<String> = (0..BATCH)
                .map(|_| format!("key-{}", rng.random_range(0..500u32)))
                .collect();
            for k in &keys {
                handle.put(k, Bytes::from(value_of(k))).unwrap();
            }
            handle.flush().await.unwrap();
            // One write of one line (shorter than PIPE_BUF): the parent reads it whole.
            let line = format!("committed {batch} {}\n", keys.join(" "));
            out.write_all(line.as_bytes()).unwrap();
            out.flush().unwrap();
        }
    });
}

/// Reads the child's reports until `want` more batches were reported (`None`: at end of
/// output); records their keys in `acked`.
fn read_reports(
    out: &mut impl std::io::BufRead,
    want: usize,
    acked: &mut std::collections::BTreeSet<String>,
) -> usize {
    let mut got = 0;
    let mut line = String::new();
    while got < want {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill is no report.
        let Some(report) = line.strip_suffix('\n') else {
            break;
        };
        if let Some(rest) = report.strip_prefix("committed ") {
            let mut parts = rest.split(' ');
            parts.next(); // the batch number
            acked.extend(parts.map(str::to_owned));
            got += 1;
        }
    }
    got
}

/// 50 rounds: a child commits batches through the cache, reporting each once flushed;
/// as soon as it has reported one to three batches (and is writing the next), it is
/// SIGKILLed. Then the store must open as it is (a store set aside whole fails the
/// round), with no torn entry, every key absent or byte-exact, and every key any child
/// reported committed present.
#[test]
fn crash_test_50_kills() {
    use std::io::BufReader;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked = std::collections::BTreeSet::new();
    let started = Instant::now();
    for round in 0..50 {
        let mut child = Command::new(&exe)
            .args(["crash_child_writer", "--exact", "--ignored", "--nocapture"])
            .env("CACHE_L3_CRASH_PATH", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let want = rng.random_range(1..=3);
        let got = read_reports(&mut out, want, &mut acked);
        assert_eq!(got, want, "round {round}: the child ended before reporting");
        // Now: the child is putting or committing its next batch. Vary the moment a bit.
        let spin = Instant::now();
        let spin_for = Duration::from_micros(rng.random_range(0..3000));
        while spin.elapsed() < spin_for {
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Reports written before the kill but not read yet are acknowledgements too.
        read_reports(&mut out, usize::MAX, &mut acked);
        let tier = DiskTier::open(&path, 4 << 20)
            .unwrap_or_else(|e| panic!("round {round}: the store does not open: {e}"));
        assert_eq!(
            tier.set_aside(),
            None,
            "round {round}: the store was unreadable and set aside whole"
        );
        assert_eq!(tier.corrupt_dropped(), 0, "round {round}: a torn entry");
        for i in 0..500 {
            let key = format!("key-{i}");
            match tier.get_blocking(&key).unwrap() {
                Some(e) => assert_eq!(e.value, value_of(&key), "round {round}: {key} intact"),
                None => assert!(
                    !acked.contains(&key),
                    "round {round}: {key} was reported committed, and is gone"
                ),
            }
        }
    }
    assert!(
        acked.len() > 50,
        "the children committed {} keys",
        acked.len()
    );
    eprintln!(
        "50 kills in {:?}, {} keys acknowledged",
        started.elapsed(),
        acked.len()
    );
}

/// The L3 store's entry count as the cache reports it (updated as each commit returns).
fn l3_entries(handle: &CacheHandle<u64>) -> u64 {
    handle.snapshot().levels.last().unwrap().entries
}

#[tokio::test]
async fn flush_returns_once_every_queued_write_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flush.redb");
    const N: u64 = 300;
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(600))
        .l3(DiskTier::open(&path, 16 << 20).unwrap(), u64_codec())
        .build()
        .unwrap();
    let handle: CacheHandle<u64> = layer.handle();
    for i in 0..N {
        handle.put(&format!("k{i}"), i).unwrap();
    }
    handle.invalidate("k0");
    handle.flush().await.unwrap();
    // Right after the flush, not eventually: every commit has returned.
    assert_eq!(
        l3_entries(&handle),
        N - 1,
        "every put and the invalidation on disk"
    );
    handle.shutdown(secs(5)).await.unwrap();
    assert_eq!(
        handle.flush().await,
        Err(cache_layer::FlushError {
            tiers: vec![cache_layer::TierFlushError::Stopped { tier: "l3" }]
        }),
        "a stopped writer says so"
    );
    drop((layer, handle));
    // The thread has let go of the file: it opens at once, with every entry.
    let tier = DiskTier::open(&path, 16 << 20).expect("released at shutdown and drop");
    assert_eq!(tier.set_aside(), None);
    assert!(tier.get_blocking("k0").unwrap().is_none());
    for i in 1..N {
        let e = tier
            .get_blocking(&format!("k{i}"))
            .unwrap()
            .expect("flushed");
        assert_eq!(e.value.as_ref(), i.to_le_bytes());
    }
}

#[tokio::test]
async fn flush_and_shutdown_without_lower_tiers_are_ok() {
    let layer = CacheLayer::builder(key as Key).build().unwrap();
    let handle: CacheHandle<u64> = layer.handle();
    handle.put("k", 1).unwrap();
    assert_eq!(handle.flush().await, Ok(()));
    assert_eq!(handle.shutdown(Duration::ZERO).await, Ok(()));
    assert_eq!(handle.peek("k"), Some(1), "L1 still serves");
}

#[test]
fn the_writer_thread_ends_and_releases_the_file_when_the_cache_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.redb");
    let layer = CacheLayer::builder(key as Key)
        .ttl(secs(600))
        .l3(DiskTier::open(&path, 1 << 20).unwrap(), u64_codec())
        .build()
        .unwrap();
    let handle: CacheHandle<u64> = layer.handle();
    handle.put("k", 7).unwrap();
    drop((layer, handle));
    // No shutdown: the drop alone ends the thread, which drains its queue first. While
    // anything holds the store open, redb refuses to open it again.
    let started = Instant::now();
    let tier = open(&path, 1 << 20);
    assert!(started.elapsed() < secs(5));
    assert!(tier.get_blocking("k").unwrap().is_some(), "drained on drop");
}

/// A current-thread runtime with I/O and time, built by hand.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn caches_with_l3_in_two_runtimes_one_after_the_other_both_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.redb");
    let build = |path: &Path| {
        CacheLayer::builder(key as Key)
            .ttl(secs(600))
            .l3(open(path, 1 << 20), u64_codec())
            .build()
            .unwrap()
    };
    let first = runtime();
    first.block_on(async {
        let layer = build(&path);
        let handle: CacheHandle<u64> = layer.handle();
        handle.put("a", 1).unwrap();
        handle.flush().await.unwrap();
        assert_eq!(l3_entries(&handle), 1);
    }); // the cache is dropped inside the first runtime
    drop(first);
    // Built outside any runtime (L3 needs none: its writer is a thread), used in another.
    let layer = build(&path);
    let second = runtime();
    second.block_on(async {
        let handle: CacheHandle<u64> = layer.handle();
        let up = Upstream::default();
        let svc = tower::ServiceBuilder::new()
            .layer(layer)
            .service(up.service::<String>(Duration::ZERO));
        assert_eq!(svc.clone().oneshot("a".to_owned()).await.unwrap(), 1);
        assert_eq!(up.calls(), 0, "read from the disk in the second runtime");
        handle.put("b", 2).unwrap();
        handle.flush().await.unwrap();
        assert_eq!(l3_entries(&handle), 2);
        handle.shutdown(secs(5)).await.unwrap();
    });
}
