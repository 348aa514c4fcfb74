//! A durable dead-letter sink on Redis Streams.
//!
//! Each give-up becomes one stream entry (`XADD <key> MAXLEN ~ <max_len> * field value
//! ...`). Entries stay in the stream until trimmed by `MAXLEN` (approximate, so trimming is
//! cheap); a consumer group reads them (`XREADGROUP`), and an entry that is acknowledged
//! (`XACK`) is never handed out again, while one that was read but not acknowledged (its
//! reader crashed) is read again from the group's pending list. [`DeadLetterStream::replay`]
//! does both: pending entries first, then new ones, acknowledging each entry the handler
//! accepts.
//!
//! The stream key is `<prefix>:{<stream name>}:dead_letters`, built through
//! [`KeySpace`](reliability_core::key::KeySpace), so a stream name can never inject a hash
//! tag or collide with another layer's keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::streams::{StreamId, StreamReadReply};
use reliability_core::error::ConfigError;
use reliability_core::redis::{RedisConfig, RedisConnection, RedisSetupError};
use tokio::sync::mpsc;

use super::{DeadLetter, DeadLetterSink};
use crate::schedule::StopReason;

/// Options of a [`RedisStreamSink`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSinkOptions {
    /// The stream's name (any string; it is escaped into the key).
    pub stream: String,
    /// Approximate longest stream length (`XADD MAXLEN ~`).
    pub max_len: u64,
    /// Letters queued for writing at most; more are dropped and counted.
    pub queue: usize,
}

impl Default for RedisSinkOptions {
    fn default() -> Self {
        Self {
            stream: "retry".to_owned(),
            max_len: 100_000,
            queue: 1024,
        }
    }
}

impl RedisSinkOptions {
    /// Checks `max_len` in `[1, 10^9]` and `queue` in `[1, 10^6]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000_000).contains(&self.max_len) {
            return Err(ConfigError::out_of_range(
                "dead_letter.max_len",
                "[1, 1000000000]",
                self.max_len,
            ));
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(ConfigError::out_of_range(
                "dead_letter.queue",
                "[1, 1000000]",
                self.queue,
            ));
        }
        Ok(())
    }
}

/// Writes dead letters to a Redis Stream from a background task.
///
/// [`send`](DeadLetterSink::send) never blocks the request path: letters go through a
/// bounded queue; when it is full (Redis far slower than failures arrive) the letter is
/// dropped and counted in [`dropped`](Self::dropped).
#[derive(Debug, Clone)]
pub struct RedisStreamSink {
    inner: Arc<SinkInner>,
}

#[derive(Debug)]
struct SinkInner {
    tx: mpsc::Sender<DeadLetter>,
    stream: DeadLetterStream,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl RedisStreamSink {
    /// Connects and starts the writer task (inside a tokio runtime).
    pub async fn connect(
        config: &RedisConfig,
        options: RedisSinkOptions,
    ) -> Result<Self, RedisSetupError> {
        options.validate()?;
        let conn = config.connect().await?;
        let stream = DeadLetterStream::new(conn, config, &options.stream)?;
        Ok(Self::start(stream, options))
    }

    /// Starts the writer task on an open stream (inside a tokio runtime).
    pub fn start(stream: DeadLetterStream, options: RedisSinkOptions) -> Self {
        let (tx, mut rx) = mpsc::channel::<DeadLetter>(options.queue.max(1));
        let counters = Arc::new(Counters::default());
        let writer = stream.clone();
        let task_counters = Arc::clone(&counters);
        let max_len = options.max_len;
        tokio::spawn(async move {
            while let Some(letter) = rx.recv().await {
                let mut written = false;
                // A short outage should not lose letters; a long one must not stall the
                // queue forever.
                for pause_ms in [0u64, 50, 200, 1000] {
                    if pause_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    }
                    match writer.append(&letter, max_len).await {
                        Ok(_) => {
                            written = true;
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "dead letter write failed"),
                    }
                }
                let counter = if written {
                    &task_counters.written
                } else {
                    &task_counters.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            inner: Arc::new(SinkInner {
                tx,
                stream,
                counters,
            }),
        }
    }

    /// The stream the sink writes to, for reading it back.
    pub fn stream(&self) -> &DeadLetterStream {
        &self.inner.stream
    }

    /// Letters written to Redis.
    pub fn written(&self) -> u64 {
        self.inner.counters.written.load(Ordering::Relaxed)
    }

    /// Letters dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    /// Letters that could not be written after retries.
    pub fn failed(&self) -> u64 {
        self.inner.counters.failed.load(Ordering::Relaxed)
    }
}

impl DeadLetterSink for RedisStreamSink {
    fn send(&self, letter: DeadLetter) {
        if self.inner.tx.try_send(letter).is_err() {
            self.inner.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A dead letter read from the stream, with its entry id (for [`DeadLetterStream::ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The stream entry id.
    pub id: String,
    /// The letter.
    pub letter: DeadLetter,
}

/// Reads, acknowledges and replays the dead letters of one stream.
#[derive(Debug, Clone)]
pub struct DeadLetterStream {
    conn: RedisConnection,
    key: String,
}

impl DeadLetterStream {
    /// The stream called `name` under `config`'s key prefix, on an open connection.
    pub fn new(
        conn: RedisConnection,
        config: &RedisConfig,
        name: &str,
    ) -> Result<Self, ConfigError> {
        let key = config.keyspace()?.key(name, "dead_letters");
        Ok(Self { conn, key })
    }

    /// The stream's Redis key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends one letter (`XADD ... MAXLEN ~ max_len`); returns the entry id.
    pub async fn append(&self, letter: &DeadLetter, max_len: u64) -> redis::RedisResult<String> {
        let mut conn = self.conn.clone();
        redis::cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*")
            .arg("attempts")
            .arg(letter.attempts)
            .arg("reason")
            .arg(letter.reason.as_str())
            .arg("last_error")
            .arg(&letter.last_error)
            .arg("first_attempt_unix_ms")
            .arg(letter.first_attempt_unix_ms)
            .arg("last_attempt_unix_ms")
            .arg(letter.last_attempt_unix_ms)
            .arg("request")
            .arg(&letter.request)
            .query_async(&mut conn)
            .await
    }

    /// Entries in the stream.
    pub async fn len(&self) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        redis::cmd("XLEN")
            .arg(&self.key)
            .query_async(&mut conn)
            .await
    }

    /// Creates the consumer group `group` (and the stream) if it does not exist yet; a new
    /// group starts at the beginning of the stream.
    pub async fn ensure_group(&self, group: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// Up to `count` entries never delivered to `group` before, now delivered to
    /// `consumer` (they stay pending until acknowledged).
    pub async fn read_new(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<StoredDeadLetter>> {
        self.read_group(group, consumer, count, ">").await
    }

    /// Up to `count` entries delivered to `consumer` earlier and not acknowledged (its
    /// previous run crashed mid-way).
    pub async fn read_pending(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<StoredDeadLetter>> {
        self.read_group(group, consumer, count, "0").await
    }

    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        from: &str,
    ) -> redis::RedisResult<Vec<StoredDeadLetter>> {
        let mut conn = self.conn.clone();
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(&self.key)
            .arg(from)
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .filter_map(|id| parse_entry(&id))
            .collect())
    }

    /// Acknowledges entries for `group`: they will not be read by it again. Returns how
    /// many were pending.
    pub async fn ack(&self, group: &str, ids: &[String]) -> redis::RedisResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        redis::cmd("XACK")
            .arg(&self.key)
            .arg(group)
            .arg(ids)
            .query_async(&mut conn)
            .await
    }

    /// Hands up to `count` letters to `handler`, pending ones first, and acknowledges each
    /// letter the handler accepts (returns `true` for). Returns the number acknowledged.
    pub async fn replay<F, Fut>(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        mut handler: F,
    ) -> redis::RedisResult<usize>
    where
        F: FnMut(DeadLetter) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.ensure_group(group).await?;
        let mut entries = self.read_pending(group, consumer, count).await?;
        if entries.len() < count {
            entries.extend(
                self.read_new(group, consumer, count - entries.len())
                    .await?,
            );
        }
        let mut accepted = Vec::new();
        for entry in entries {
            if handler(entry.letter).await {
                accepted.push(entry.id);
            }
        }
        self.ack(group, &accepted).await?;
        Ok(accepted.len())
    }
}

fn parse_entry(entry: &StreamId) -> Option<StoredDeadLetter> {
    let reason = match entry.get::<String>("reason")?.as_str() {
        "not_retryable" => StopReason::NotRetryable,
        "critical" => StopReason::Critical,
        "not_replayable" => StopReason::NotReplayable,
        "attempts_exhausted" => StopReason::AttemptsExhausted,
        "elapsed_exhausted" => StopReason::ElapsedExhausted,
        "budget_exhausted" => StopReason::BudgetExhausted,
        "deadline_exceeded" => StopReason::DeadlineExceeded,
        _ => return None,
    };
    Some(StoredDeadLetter {
        id: entry.id.clone(),
        letter: DeadLetter {
            attempts: entry.get("attempts")?,
            reason,
            last_error: entry.get("last_error").unwrap_or_default(),
            first_attempt_unix_ms: entry.get("first_attempt_unix_ms")?,
            last_attempt_unix_ms: entry.get("last_attempt_unix_ms")?,
            request: entry.get("request").unwrap_or_default(),
        },
    })
}
