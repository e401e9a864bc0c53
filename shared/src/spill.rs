//! The second durable store: where a webhook puts an accepted event when SQS will not take it
//! in time, so that its 2xx never rests on SQS alone, and the drainer that moves spilled
//! events onto their queues later.
//!
//! The spill is S3, in a bucket of its own under `spill/<kind>/`, encrypted with S3's own
//! keys (SSE-S3) rather than the stack's KMS key: the queues depend on SQS *and* KMS, so a
//! store that depends on neither is one that survives either's outage. One object per event,
//! named after the event's idempotency key, so a webhook that spills the same event twice
//! (Twilio's retry of a lost answer) writes one object. The drainer sends each object's
//! envelope to its queue and deletes the object only after SQS accepted it: a crash between
//! the two sends it again, a duplicate the workers absorb by the same key.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::events::{Envelope, EventKind};
use crate::metrics::{self, name};
use crate::queue::EventQueue;
use crate::stack_names::WorkQueue;

/// Where spilled events live in the spill bucket.
pub const PREFIX: &str = "spill/";

/// Spilled events the drainer re-enqueues at once.
pub const DRAIN_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
#[error("the event could not be spilled: {0}")]
pub struct SpillError(pub String);

/// A store an accepted event can be put in when its queue will not take it.
pub trait SpillStore: Send + Sync {
    fn put(&self, envelope: &Envelope) -> impl Future<Output = Result<(), SpillError>> + Send;
}

/// No second store: the queue alone (tests of the plain path, and tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSpill;

impl SpillStore for NoSpill {
    async fn put(&self, _envelope: &Envelope) -> Result<(), SpillError> {
        Err(SpillError("no spill store is configured".into()))
    }
}

impl<S: SpillStore> SpillStore for std::sync::Arc<S> {
    fn put(&self, envelope: &Envelope) -> impl Future<Output = Result<(), SpillError>> + Send {
        (**self).put(envelope)
    }
}

/// The object key of a spilled event: its kind, then a hash of its idempotency key (the key
/// itself holds SIDs, which are not for object names, and can be long).
pub fn key(envelope: &Envelope) -> String {
    let digest = Sha256::digest(envelope.idempotency_key.as_bytes());
    format!(
        "{PREFIX}{}/{}.json",
        envelope.kind.as_str(),
        hex::encode(&digest[..16])
    )
}

/// The kind a spilled object's key names, if it is one of ours.
pub fn kind_of_key(key: &str) -> Option<EventKind> {
    let rest = key.strip_prefix(PREFIX)?;
    let (kind, _) = rest.split_once('/')?;
    EventKind::ALL.into_iter().find(|k| k.as_str() == kind)
}

/// [`SpillStore`] on S3.
#[derive(Clone)]
pub struct S3Spill {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Spill {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl SpillStore for S3Spill {
    async fn put(&self, envelope: &Envelope) -> Result<(), SpillError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key(envelope))
            .content_type("application/json")
            .body(ByteStream::from(envelope.to_json().into_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SpillError(crate::aws::error_summary(&e)))
    }
}

/// How an accepted event was made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// SQS did not take it in time; it waits in the spill for the drainer.
    Spilled,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Spilled => "spilled",
        }
    }
}

/// Neither store took the event.
#[derive(Debug, thiserror::Error)]
#[error("queue: {queue}; spill: {spill}")]
pub struct NotDurable {
    pub queue: String,
    pub spill: String,
}

/// How long each store gets: the queue first (its SDK retries with jitter inside this), then
/// the spill with what is left of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub queue: Duration,
    pub total: Duration,
}

impl Deadlines {
    /// A callback's: 1.5 s for SQS, 3 s in all, well inside the `rt` of 5 s its URL gives
    /// Twilio (`twilio::overrides::CALLBACK`).
    pub const CALLBACK: Self = Self {
        queue: Duration::from_millis(1500),
        total: Duration::from_millis(3000),
    };

    /// Splits a caller's wait (the voice webhook's enqueue deadline): 60% for SQS.
    pub fn within(total: Duration) -> Self {
        Self {
            queue: total.mul_f64(0.6),
            total,
        }
    }
}

/// Makes an envelope durable: the queue, else the spill. Each store's time is bounded, so
/// the answer to Twilio never waits longer than [`Deadlines::total`].
pub async fn make_durable<Q: EventQueue, S: SpillStore>(
    queue: &Q,
    spill: &S,
    deadlines: Deadlines,
    envelope: &Envelope,
) -> Result<Delivery, NotDurable> {
    let started = Instant::now();
    let queue_error = match tokio::time::timeout(deadlines.queue, queue.send(envelope)).await {
        Ok(Ok(())) => return Ok(Delivery::Queued),
        Ok(Err(e)) => e.0,
        Err(_) => format!("no answer within {:?}", deadlines.queue),
    };
    let left = deadlines.total.saturating_sub(started.elapsed());
    let spill_error = match tokio::time::timeout(left, spill.put(envelope)).await {
        Ok(Ok(())) => {
            metrics::count(name::EVENTS_SPILLED, 1);
            tracing::warn!(
                call_sid = %envelope.call_sid,
                kind = envelope.kind.as_str(),
                queue_error,
                "SQS did not take the event; spilled it for the drainer"
            );
            return Ok(Delivery::Spilled);
        }
        Ok(Err(e)) => e.0,
        Err(_) => format!("no answer within {left:?}"),
    };
    Err(NotDurable {
        queue: queue_error,
        spill: spill_error,
    })
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Drained {
    /// Objects found in the spill.
    pub found: usize,
    /// Sent to their queue and deleted.
    pub drained: usize,
    /// Still in the spill: SQS refused them, or the deadline came first.
    pub left: usize,
    /// Objects that are not an envelope (never written by our webhooks): kept for ops.
    pub unreadable: usize,
}

/// The drainer: lists the spill, re-enqueues each event and deletes it once SQS took it.
pub struct SpillDrainer<Q> {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// The queue of each pipeline.
    pub queues: Vec<(WorkQueue, Q)>,
}

impl<Q: EventQueue> SpillDrainer<Q> {
    /// Drains until the spill is empty or `deadline` comes.
    pub async fn drain(&self, deadline: Instant) -> Drained {
        let mut drained = Drained::default();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(PREFIX)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                ),
                Err(e) => {
                    tracing::error!(
                        error = crate::aws::error_summary(&e),
                        "cannot list the spill"
                    );
                    break;
                }
            }
        }
        drained.found = keys.len();
        // Several at a time: after an outage the spill holds minutes of traffic, and each
        // event is three requests (get, send, delete) that mostly wait.
        let outcomes: Vec<Result<bool, String>> = futures::stream::iter(&keys)
            .take_while(|_| std::future::ready(Instant::now() < deadline))
            .map(|key| async move {
                let outcome = self.drain_one(key).await;
                if let Err(e) = &outcome {
                    tracing::warn!(key, error = e, "spilled event not re-enqueued yet");
                }
                outcome
            })
            .buffer_unordered(DRAIN_CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                Ok(true) => drained.drained += 1,
                Ok(false) => drained.unreadable += 1,
                Err(_) => {}
            }
        }
        drained.left = drained.found - drained.drained;
        metrics::count(name::SPILL_DRAINED, drained.drained as u64);
        metrics::count(name::SPILL_DEPTH, drained.left as u64);
        tracing::info!(
            found = drained.found,
            drained = drained.drained,
            left = drained.left,
            unreadable = drained.unreadable,
            outcome = if drained.left == 0 { "empty" } else { "left" },
            "spill drained"
        );
        metrics::flush();
        drained
    }

    /// `Ok(false)`: the object is not an event of ours and is left for ops.
    async fn drain_one(&self, key: &str) -> Result<bool, String> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| crate::aws::error_summary(&e))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let envelope = match std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(|text| Envelope::from_json(text).map_err(|e| e.to_string()))
        {
            Ok(envelope) if kind_of_key(key) == Some(envelope.kind) => envelope,
            Ok(_) | Err(_) => {
                tracing::error!(key, "not a spilled envelope of this stack; left in place");
                return Ok(false);
            }
        };
        let pipeline = WorkQueue::of(envelope.kind);
        let (_, queue) = self
            .queues
            .iter()
            .find(|(p, _)| *p == pipeline)
            .ok_or_else(|| format!("no queue for {pipeline}"))?;
        queue.send(&envelope).await.map_err(|e| e.0)?;
        // Deleted only now: had the send failed, the object would wait for the next run.
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| crate::aws::error_summary(&e))?;
        tracing::info!(
            call_sid = %envelope.call_sid,
            kind = envelope.kind.as_str(),
            outcome = "re-enqueued",
            "spilled event re-enqueued"
        );
        Ok(true)
    }
}

/// What an operator sees of the spill: how many events wait and since when.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpillDepth {
    pub events: usize,
    /// Seconds since the oldest spilled event was written.
    pub oldest_secs: Option<u64>,
}

/// Counts the spill (`voicectl dlq stats`).
pub async fn depth(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<SpillDepth, String> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(PREFIX)
        .into_paginator()
        .send();
    let mut depth = SpillDepth::default();
    let now = SystemTime::now();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| crate::aws::error_summary(&e))?;
        for object in page.contents() {
            depth.events += 1;
            let age = object
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs());
            depth.oldest_secs = depth.oldest_secs.max(age);
        }
    }
    Ok(depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::{Params, StatusCallback};

    #[test]
    fn one_object_per_event_named_by_kind() {
        let params: Params = [
            ("CallSid", "CA1"),
            ("AccountSid", "AC1"),
            ("CallStatus", "ringing"),
            ("SequenceNumber", "1"),
        ]
        .into_iter()
        .collect();
        let callback = StatusCallback::parse(&params).unwrap();
        let first = Envelope::call_status(&callback, &params, None);
        let retried = Envelope::call_status(&callback, &params, Some("another-delivery"));
        assert_eq!(key(&first), key(&retried), "a retry overwrites, never adds");
        assert!(key(&first).starts_with("spill/call.status/"));
        assert_eq!(kind_of_key(&key(&first)), Some(EventKind::CallStatus));
        assert_eq!(kind_of_key("spill/nope/x.json"), None);
        assert_eq!(kind_of_key("recordings/x"), None);
    }
}
