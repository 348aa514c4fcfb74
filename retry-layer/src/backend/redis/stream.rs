//! Reading the stream back: ranges, consumer groups, pending lists, claims, replay.

use std::time::Duration;

use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use reliability_core::error::ConfigError;
use reliability_core::redis::{RedisConfig, RedisConnection};

use crate::backend::DeadLetter;
use crate::schedule::StopReason;

/// A dead letter read from the stream, with its entry id (for [`DeadLetterStream::ack`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeadLetter {
    /// The stream entry id.
    pub id: String,
    /// The letter.
    pub letter: DeadLetter,
}

/// An entry of a consumer group's pending list: delivered, not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDeadLetter {
    /// The stream entry id.
    pub id: String,
    /// The consumer it was last delivered to.
    pub consumer: String,
    /// Time since it was last delivered.
    pub idle: Duration,
    /// How many times it was delivered (claims included).
    pub deliveries: u64,
}

/// Reads, lists, claims, acknowledges and replays the dead letters of one stream.
///
/// Two ways to read: [`range`](Self::range) lists entries without touching any consumer
/// group; a consumer group ([`ensure_group`](Self::ensure_group)) hands each entry to one
/// consumer ([`read_new`](Self::read_new)), keeps it [pending](Self::pending) until
/// [acknowledged](Self::ack), gives it back to the same consumer after a crash
/// ([`read_pending`](Self::read_pending)) or to another one once idle long enough
/// ([`claim_idle`](Self::claim_idle)). [`replay`](Self::replay) is the usual loop.
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
        self.xadd(letter, max_len).query_async(&mut conn).await
    }

    /// Appends `letters` in order in one `MULTI`/`EXEC` transaction: all of them or none
    /// (a batch is never half written, so retrying a failed batch cannot duplicate a
    /// prefix of it).
    pub(super) async fn append_all<'a, I>(&self, letters: I, max_len: u64) -> redis::RedisResult<()>
    where
        I: IntoIterator<Item = &'a DeadLetter>,
    {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for letter in letters {
            pipe.add_command(self.xadd(letter, max_len)).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await
    }

    fn xadd(&self, letter: &DeadLetter, max_len: u64) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key)
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
            .arg(&letter.request);
        cmd
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

    /// Up to `count` entries with ids between `start` and `end` inclusive, oldest first
    /// (`XRANGE`; `"-"` and `"+"` are the first and last entry). Reading a range delivers
    /// nothing to any consumer group: it is for listing and inspection.
    pub async fn range(
        &self,
        start: &str,
        end: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<StoredDeadLetter>> {
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(reply.ids.iter().filter_map(parse_entry).collect())
    }

    /// Up to `count` entries delivered to some consumer of `group` and not acknowledged
    /// yet, oldest first, with who holds each, for how long and how often it was delivered
    /// (`XPENDING <key> <group> - + <count>`).
    pub async fn pending(
        &self,
        group: &str,
        count: usize,
    ) -> redis::RedisResult<Vec<PendingDeadLetter>> {
        let mut conn = self.conn.clone();
        let reply: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.key)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(count.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|p| PendingDeadLetter {
                id: p.id,
                consumer: p.consumer,
                idle: Duration::from_millis(p.last_delivered_ms as u64),
                deliveries: p.times_delivered as u64,
            })
            .collect())
    }

    /// Takes over up to `count` entries of `group` that have been pending (delivered, not
    /// acknowledged) for at least `min_idle`, whoever holds them, and returns them now
    /// held by `consumer` (`XAUTOCLAIM`, Redis 6.2 or later). This is how a worker picks
    /// up the letters of a worker that crashed: they stay pending under the new consumer
    /// until it [acknowledges](Self::ack) them.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use reliability_core::harness::RedisServer;
    /// # let Some(server) = RedisServer::start() else { return Ok(()) };
    /// # let config = server.config();
    /// use std::time::{Duration, SystemTime};
    /// use retry_layer::backend::DeadLetterStream;
    /// use retry_layer::{DeadLetter, StopReason};
    ///
    /// let stream = DeadLetterStream::new(config.connect().await?, &config, "orders")?;
    /// let now = SystemTime::now();
    /// stream.append(&DeadLetter::new(3, StopReason::AttemptsExhausted, "503", now, now, "POST /pay"), 1000).await?;
    /// stream.ensure_group("ops").await?;
    ///
    /// // Worker "a" reads the letter and dies before acknowledging it.
    /// assert_eq!(stream.read_new("ops", "a", 10).await?.len(), 1);
    /// assert_eq!(stream.pending("ops", 10).await?[0].consumer, "a");
    ///
    /// // Worker "b" takes over what has been pending long enough, handles it, acks it.
    /// assert!(stream.claim_idle("ops", "b", Duration::from_secs(60), 10).await?.is_empty());
    /// let claimed = stream.claim_idle("ops", "b", Duration::ZERO, 10).await?;
    /// assert_eq!(claimed[0].letter.request, "POST /pay");
    /// let ids: Vec<String> = claimed.into_iter().map(|e| e.id).collect();
    /// assert_eq!(stream.ack("ops", &ids).await?, 1);
    /// assert!(stream.pending("ops", 10).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn claim_idle(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> redis::RedisResult<Vec<StoredDeadLetter>> {
        let count = count.max(1);
        let mut claimed = Vec::new();
        let mut cursor = "0-0".to_owned();
        // XAUTOCLAIM scans at most 10 * COUNT pending entries per call; the cursor comes
        // back as 0-0 once the whole pending list was scanned.
        loop {
            let mut conn = self.conn.clone();
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&self.key)
                .arg(group)
                .arg(consumer)
                .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&cursor)
                .arg("COUNT")
                .arg(count - claimed.len())
                .query_async(&mut conn)
                .await?;
            claimed.extend(reply.claimed.iter().filter_map(parse_entry));
            cursor = reply.next_stream_id;
            if cursor == "0-0" || claimed.len() >= count {
                return Ok(claimed);
            }
        }
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
