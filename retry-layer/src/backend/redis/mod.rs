//! A durable dead-letter sink on Redis Streams.
//!
//! Each give-up becomes one stream entry (`XADD <key> MAXLEN ~ <max_len> * field value
//! ...`). Entries stay in the stream until trimmed by `MAXLEN` (approximate, so trimming is
//! cheap); a consumer group reads them (`XREADGROUP`), and an entry that is acknowledged
//! (`XACK`) is never handed out again, while one that was read but not acknowledged (its
//! reader crashed) is read again from the group's pending list, or claimed by another
//! consumer once idle ([`DeadLetterStream::claim_idle`]). [`DeadLetterStream::replay`]
//! does the usual loop: pending entries first, then new ones, acknowledging each entry
//! the handler accepts.
//!
//! The stream key is `<prefix>:{<stream name>}:dead_letters`, built through
//! [`KeySpace`](reliability_core::key::KeySpace), so a stream name can never inject a hash
//! tag or collide with another layer's keys.
//!
//! # Nothing lost on an outage, a stop or a drop
//!
//! [`RedisStreamSink`] writes from a background task. While Redis is unreachable, letters
//! wait in a bounded in-memory **spool** ([`RedisSinkOptions::spool`]) and are delivered
//! **in the order they were sent**, once Redis answers again (retried with a jittered
//! backoff from 50 ms up to 5 s). A full spool drops the *newest* letters, counts them
//! ([`RedisStreamSink::overflowed`]) and logs one `warn` per outage, never one per letter.
//! [`flush`](RedisStreamSink::flush) waits until everything sent before it is in Redis;
//! [`shutdown`](RedisStreamSink::shutdown) flushes within a deadline, stops the task and
//! says how many letters did not make it.

mod error;
mod stream;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reliability_core::error::ConfigError;
use reliability_core::redis::{RedisConfig, RedisSetupError};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::error::{FlushError, SinkStartError};
pub use self::stream::{DeadLetterStream, PendingDeadLetter, StoredDeadLetter};
use self::writer::{Command, Writer};
use super::{DeadLetter, DeadLetterSink};

/// Options of a [`RedisStreamSink`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSinkOptions {
    /// The stream's name (any string; it is escaped into the key).
    pub stream: String,
    /// Approximate longest stream length (`XADD MAXLEN ~`).
    pub max_len: u64,
    /// Letters waiting to be taken by the writer task at most (the hand-off from the
    /// request path); more are dropped and counted in [`RedisStreamSink::dropped`]. The
    /// task empties it continuously, outage or not, so it only fills when letters arrive
    /// faster than the task can move them.
    pub queue: usize,
    /// Letters kept in memory, in order, while Redis is unreachable or behind; more are
    /// dropped and counted in [`RedisStreamSink::overflowed`]. A letter holds at most
    /// two 4 KiB texts, so the default of 10,000 bounds the spool near 80 MiB in the
    /// worst case (a few MiB with typical letters).
    pub spool: usize,
    /// How long [`RedisStreamSink::flush`] waits at most.
    #[serde(with = "humantime_serde")]
    pub flush_timeout: Duration,
}

impl Default for RedisSinkOptions {
    fn default() -> Self {
        Self {
            stream: "retry".to_owned(),
            max_len: 100_000,
            queue: 1024,
            spool: 10_000,
            flush_timeout: Duration::from_secs(30),
        }
    }
}

impl RedisSinkOptions {
    /// Checks `max_len` in `[1, 10^9]`, `queue` in `[1, 10^6]`, `spool` in `[1, 10^7]` and
    /// `flush_timeout` in `(0s, 1h]`.
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
        if !(1..=10_000_000).contains(&self.spool) {
            return Err(ConfigError::out_of_range(
                "dead_letter.spool",
                "[1, 10000000]",
                self.spool,
            ));
        }
        if self.flush_timeout.is_zero() || self.flush_timeout > Duration::from_secs(3600) {
            return Err(ConfigError::out_of_range(
                "dead_letter.flush_timeout",
                "(0s, 1h]",
                humantime::format_duration(self.flush_timeout),
            ));
        }
        Ok(())
    }
}

/// Writes dead letters to a Redis Stream from a background task.
///
/// [`send`](DeadLetterSink::send) never blocks the request path: letters go through a
/// bounded queue to the writer task ([`RedisSinkOptions::queue`]; when it is full the
/// letter is dropped and counted in [`dropped`](Self::dropped)). The task writes them in
/// order; while Redis is unreachable it keeps them in a bounded spool
/// ([`RedisSinkOptions::spool`], overflow counted in [`overflowed`](Self::overflowed)) and
/// delivers them when Redis is back.
///
/// Clones share the task. The task ends when the last clone is dropped (after writing
/// what is spooled, if Redis answers; what it cannot write then is counted in
/// [`failed`](Self::failed)) or at [`shutdown`](Self::shutdown). It sleeps while there
/// is nothing to write: no timers run while idle.
///
/// Delivery is exactly once in the order sent as long as Redis answers each write or
/// refuses it; a write whose answer is lost (a response timeout while Redis did apply
/// it) is retried, so that batch can appear twice: at-least-once in that case.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use reliability_core::harness::RedisServer;
/// # let Some(server) = RedisServer::start() else { return Ok(()) };
/// # let config = server.config();
/// use std::time::Duration;
/// use retry_layer::backend::RedisSinkOptions;
/// use retry_layer::{ClassifierPolicy, RedisStreamSink, RetryLayer, StopReason};
/// use retry_layer::budget::BudgetConfig;
/// use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
///
/// let sink = RedisStreamSink::connect(&config, RedisSinkOptions::default()).await?;
/// let retry = RetryLayer::builder()
///     .policy(ClassifierPolicy::default().describe_with(|id: &u32| format!("order {id}")))
///     .max_attempts(2)
///     .budget(BudgetConfig::Unlimited)
///     .dead_letter(sink.clone())
///     .build()?;
/// let down = service_fn(|_: u32| async { Err::<(), BoxError>("connection refused".into()) });
/// let svc = ServiceBuilder::new().layer(retry).service(down);
/// assert!(svc.oneshot(7).await.is_err());
///
/// sink.flush().await?; // the letter is in Redis now
/// let letters = sink.stream().range("-", "+", 10).await?;
/// assert_eq!(letters[0].letter.request, "order 7");
/// assert_eq!(letters[0].letter.reason, StopReason::AttemptsExhausted);
/// sink.shutdown(Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStreamSink {
    inner: Arc<SinkInner>,
}

#[derive(Debug)]
struct SinkInner {
    tx: mpsc::Sender<Command>,
    stream: DeadLetterStream,
    counters: Arc<Counters>,
    flush_timeout: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Letters taken by `send` (queued).
    accepted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    overflowed: AtomicU64,
    failed: AtomicU64,
    /// Letters currently in the spool.
    spooled: AtomicU64,
}

impl Counters {
    fn undelivered(&self) -> u64 {
        // Read the terminal counters first: a letter moves from "accepted" to one of them,
        // so this order can only overstate, never report a negative.
        let settled = self.written.load(Ordering::Acquire)
            + self.overflowed.load(Ordering::Acquire)
            + self.failed.load(Ordering::Acquire);
        self.accepted
            .load(Ordering::Acquire)
            .saturating_sub(settled)
    }
}

impl RedisStreamSink {
    /// Connects and starts the writer task on the current tokio runtime.
    ///
    /// Fails on invalid options (`dead_letter.*` fields), when Redis cannot be reached,
    /// or (as a [`RedisSetupError::Config`] on the field `dead_letter.runtime`) when
    /// polled outside a tokio runtime.
    pub async fn connect(
        config: &RedisConfig,
        options: RedisSinkOptions,
    ) -> Result<Self, RedisSetupError> {
        options.validate()?;
        let handle = Handle::try_current().map_err(|_| {
            ConfigError::new("dead_letter.runtime", "connect needs a tokio runtime")
        })?;
        let conn = config.connect().await?;
        let stream = DeadLetterStream::new(conn, config, &options.stream)?;
        Ok(Self::spawn(&handle, stream, &options))
    }

    /// Starts the writer task on an open stream, on the current tokio runtime.
    ///
    /// Never panics: outside a runtime it returns [`SinkStartError::NoRuntime`] (use
    /// [`start_on`](Self::start_on) to name one); invalid options give
    /// [`SinkStartError::Config`].
    pub fn start(
        stream: DeadLetterStream,
        options: RedisSinkOptions,
    ) -> Result<Self, SinkStartError> {
        let handle = Handle::try_current().map_err(|_| SinkStartError::NoRuntime)?;
        Self::start_on(&handle, stream, options)
    }

    /// Starts the writer task on an open stream, on the runtime `handle` names (which may
    /// be another thread's runtime). The stream's connection should belong to that
    /// runtime too.
    pub fn start_on(
        handle: &Handle,
        stream: DeadLetterStream,
        options: RedisSinkOptions,
    ) -> Result<Self, SinkStartError> {
        options.validate()?;
        Ok(Self::spawn(handle, stream, &options))
    }

    fn spawn(handle: &Handle, stream: DeadLetterStream, options: &RedisSinkOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.queue);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            rx,
            stream: stream.clone(),
            counters: Arc::clone(&counters),
            max_len: options.max_len,
            capacity: options.spool,
        };
        let task = handle.spawn(writer.run());
        Self {
            inner: Arc::new(SinkInner {
                tx,
                stream,
                counters,
                flush_timeout: options.flush_timeout,
                task: Mutex::new(Some(task)),
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

    /// Letters dropped because the queue to the writer task was full (or the task had
    /// stopped).
    pub fn dropped(&self) -> u64 {
        self.inner.counters.dropped.load(Ordering::Relaxed)
    }

    /// Letters dropped because the spool was full while Redis was unreachable or behind.
    pub fn overflowed(&self) -> u64 {
        self.inner.counters.overflowed.load(Ordering::Relaxed)
    }

    /// Letters accepted but never written because the writer stopped first: at
    /// [`shutdown`](Self::shutdown) past its deadline, or when the last handle was dropped
    /// while Redis was unreachable.
    pub fn failed(&self) -> u64 {
        self.inner.counters.failed.load(Ordering::Relaxed)
    }

    /// Letters in the spool now: taken from the queue, not yet written.
    pub fn spooled(&self) -> u64 {
        self.inner.counters.spooled.load(Ordering::Relaxed)
    }

    /// Letters accepted and not (yet) written, overflowed or failed: in the queue or the
    /// spool.
    pub fn undelivered(&self) -> u64 {
        self.inner.counters.undelivered()
    }

    /// Waits until every letter sent before this call is written to Redis, at most
    /// [`RedisSinkOptions::flush_timeout`]. During an outage the writer tries Redis at
    /// once when a flush arrives instead of finishing its backoff.
    ///
    /// Letters that overflowed the spool or the queue are not waited for (they are gone;
    /// see [`overflowed`](Self::overflowed) and [`dropped`](Self::dropped)).
    pub async fn flush(&self) -> Result<(), FlushError> {
        self.flush_until(Instant::now() + self.inner.flush_timeout)
            .await
    }

    async fn flush_until(&self, deadline: Instant) -> Result<(), FlushError> {
        let counters = &self.inner.counters;
        let timed_out = || FlushError::TimedOut {
            undelivered: counters.undelivered(),
        };
        let stopped = || FlushError::Stopped {
            undelivered: counters.undelivered(),
        };
        let (done, written) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.inner.tx.send(Command::Flush(done))).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => return Err(stopped()),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, written).await {
            Err(_) => Err(timed_out()),
            Ok(Err(_)) => Err(stopped()),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Flushes within `deadline`, then stops the writer task (for every clone: their
    /// later letters are counted in [`dropped`](Self::dropped)). Returns within the
    /// deadline, plus the moment it takes to cancel the task.
    ///
    /// `Ok` when every letter accepted before the task stopped was written; otherwise the
    /// error says how many were not ([`FlushError::undelivered`]; they are also added to
    /// [`failed`](Self::failed)). A transaction in flight at the deadline may still land
    /// in Redis, so that count is an upper bound.
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), FlushError> {
        let deadline = Instant::now() + deadline;
        let flushed = self.flush_until(deadline).await;
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            // Aborting takes effect at the task's next await; wait for it so that the
            // counters below are final.
            let grace = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            let _ = tokio::time::timeout(grace, task).await;
        }
        let counters = &self.inner.counters;
        let undelivered = counters.undelivered();
        counters.failed.fetch_add(undelivered, Ordering::AcqRel);
        match flushed {
            Ok(()) if undelivered == 0 => Ok(()),
            Ok(()) => Err(FlushError::Stopped { undelivered }),
            Err(FlushError::TimedOut { .. }) => Err(FlushError::TimedOut { undelivered }),
            Err(_) => Err(FlushError::Stopped { undelivered }),
        }
    }
}

impl DeadLetterSink for RedisStreamSink {
    fn send(&self, letter: DeadLetter) {
        let counters = &self.inner.counters;
        // Counted before it is queued, so the writer can never settle a letter that is
        // not yet accepted (which would make `undelivered` undercount).
        counters.accepted.fetch_add(1, Ordering::AcqRel);
        if self.inner.tx.try_send(Command::Letter(letter)).is_err() {
            counters.accepted.fetch_sub(1, Ordering::AcqRel);
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
