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

use std::sync::atomic::{AtomicBool, Ordering};
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

    /// Keeps a request whose signature could not be checked yet ([`UnverifiedRequest`]).
    fn put_unverified(
        &self,
        request: &UnverifiedRequest,
    ) -> impl Future<Output = Result<(), SpillError>> + Send;
}

/// No second store: the queue alone (tests of the plain path, and tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSpill;

impl SpillStore for NoSpill {
    async fn put(&self, _envelope: &Envelope) -> Result<(), SpillError> {
        Err(SpillError("no spill store is configured".into()))
    }

    async fn put_unverified(&self, _request: &UnverifiedRequest) -> Result<(), SpillError> {
        Err(SpillError("no spill store is configured".into()))
    }
}

impl<S: SpillStore> SpillStore for std::sync::Arc<S> {
    fn put(&self, envelope: &Envelope) -> impl Future<Output = Result<(), SpillError>> + Send {
        (**self).put(envelope)
    }

    fn put_unverified(
        &self,
        request: &UnverifiedRequest,
    ) -> impl Future<Output = Result<(), SpillError>> + Send {
        (**self).put_unverified(request)
    }
}

/// A webhook request accepted before its signature could be checked: a cold start whose
/// auth token cannot be read (Secrets Manager down). Accepting it durably keeps the promise
/// that an accepted callback is durable whatever one AWS service is doing; nothing acts on it
/// until the drainer has checked it exactly as the webhook would have ([`VerifyLater`]) and
/// made its event, so a forgery costs one object and is then deleted. Kept whole (the body
/// byte for byte, the headers the check reads), under its kind's spill prefix, so a webhook's
/// write permission is the same as for its events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnverifiedRequest {
    pub kind: EventKind,
    /// When the webhook accepted it: its event's `received_at`.
    pub received_at: String,
    pub raw_path: String,
    pub raw_query: String,
    /// The headers the signature check and the envelope read, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body as sent (at most 64 KiB), base64.
    pub body: String,
}

impl UnverifiedRequest {
    /// The headers kept: what [`crate::webhook::Verifier`] reads.
    pub const HEADERS: [&str; 4] = [
        "content-type",
        crate::twilio::signature::SIGNATURE_HEADER,
        crate::twilio::signature::SIGNATURE_SETTINGS_HEADER,
        crate::events::IDEMPOTENCY_HEADER,
    ];

    pub fn body_bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .map_err(|e| format!("body is not base64: {e}"))
    }

    /// Its object key: `spill/<kind>/unverified/<hash>.json`, the hash over what Twilio sent
    /// (path, query, signature, body), so a retried delivery writes the same object.
    pub fn key(&self) -> String {
        let mut digest = Sha256::new();
        for part in [&self.raw_path, &self.raw_query, &self.body] {
            digest.update(part.as_bytes());
            digest.update([0]);
        }
        for (name, value) in &self.headers {
            digest.update(name.as_bytes());
            digest.update(value.as_bytes());
            digest.update([0]);
        }
        format!(
            "{PREFIX}{}/{UNVERIFIED}/{}.json",
            self.kind.as_str(),
            hex::encode(&digest.finalize()[..16])
        )
    }
}

/// The segment of a spill key that marks an [`UnverifiedRequest`].
const UNVERIFIED: &str = "unverified";

/// Whether a spill key holds an [`UnverifiedRequest`].
pub fn is_unverified_key(key: &str) -> bool {
    key.strip_prefix(PREFIX)
        .and_then(|rest| rest.split('/').nth(1))
        .is_some_and(|segment| segment == UNVERIFIED)
}

/// Checks an [`UnverifiedRequest`] as its webhook would have and makes its event: the
/// drainer's way to the webhook's own checks (implemented by the webhook's verifier).
pub trait VerifyLater: Send + Sync {
    fn envelope(
        &self,
        request: &UnverifiedRequest,
    ) -> impl Future<Output = Result<Envelope, Unverifiable>> + Send;
}

/// Why an [`UnverifiedRequest`] gave no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverifiable {
    /// Not from Twilio, or not well-formed: deleted, as the webhook would have answered
    /// 403 or 400.
    Refused(String),
    /// The token still cannot be read: left for the next drain.
    NotYet(String),
}

/// No later checks: unverified requests wait in the spill (tools, tests of the plain path).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVerifier;

impl VerifyLater for NoVerifier {
    async fn envelope(&self, _request: &UnverifiedRequest) -> Result<Envelope, Unverifiable> {
        Err(Unverifiable::NotYet(
            "this drainer checks no signatures".into(),
        ))
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

impl S3Spill {
    async fn put_json(&self, key: String, json: String) -> Result<(), SpillError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(json.into_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SpillError(crate::aws::error_summary(&e)))
    }
}

impl SpillStore for S3Spill {
    async fn put(&self, envelope: &Envelope) -> Result<(), SpillError> {
        self.put_json(key(envelope), envelope.to_json()).await
    }

    async fn put_unverified(&self, request: &UnverifiedRequest) -> Result<(), SpillError> {
        let json = serde_json::to_string(request).map_err(|e| SpillError(e.to_string()))?;
        self.put_json(request.key(), json).await
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

/// How long the stores get: the queue alone first (its SDK retries with jitter inside this);
/// if it has not answered by then, the spill starts beside it and the first to keep the event
/// answers; both are bounded by the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub queue: Duration,
    pub total: Duration,
}

impl Deadlines {
    /// A callback's: 1.5 s for SQS alone, 3 s in all, well inside the `rt` of 5 s its URL gives
    /// Twilio (`twilio::overrides::CALLBACK`).
    pub const CALLBACK: Self = Self {
        queue: Duration::from_millis(1500),
        total: Duration::from_millis(3000),
    };

    /// Splits a caller's wait (the voice webhook's enqueue deadline): 60% for SQS alone.
    pub fn within(total: Duration) -> Self {
        Self {
            queue: total.mul_f64(0.6),
            total,
        }
    }
}

/// The queue's circuit breaker, one per instance (built at cold start, kept across
/// invocations): after [`QueueBreaker::FAILURES`] sends in a row that SQS refused or did not
/// answer in time, it opens, and for a jittered while (1-2 s, then 2-4 s, up to 4-8 s while
/// SQS stays down) a webhook spills first without asking SQS; then one request probes SQS
/// again, and a success closes it. During an outage a callback then costs one spill write
/// (milliseconds), not the queue's whole deadline of refusals and retries before it, so an
/// instance is not held for half a second per callback and Lambda's concurrency and duration
/// stay flat ("Circuit breaker pattern", AWS Prescriptive Guidance: fail fast to a fallback
/// while the dependency recovers). A Lambda instance serves one request at a time, so the
/// half-open state lets exactly one request probe.
#[derive(Clone)]
pub struct QueueBreaker(Breaker);

type Breaker = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
    BreakerNotes,
>;

impl QueueBreaker {
    /// Sends in a row that must fail before the breaker opens: a lone refusal (a throttled
    /// request, a lost answer) is the SDK's to retry, not an outage.
    pub const FAILURES: u32 = 3;

    pub fn new() -> Self {
        // Whole seconds: failsafe's jittered backoff counts in them (and asks for ≥ 1 s).
        let backoff = failsafe::backoff::equal_jittered(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(8),
        );
        Self(
            failsafe::Config::new()
                .failure_policy(failsafe::failure_policy::consecutive_failures(
                    Self::FAILURES,
                    backoff,
                ))
                .instrument(BreakerNotes)
                .build(),
        )
    }
}

impl Default for QueueBreaker {
    fn default() -> Self {
        Self::new()
    }
}

/// What the breaker's state changes leave behind: a log line and a count for each opening
/// and closing, so the dashboard and `make chaos` see an outage as the webhooks met it.
#[derive(Debug, Clone, Copy)]
pub struct BreakerNotes;

impl failsafe::Instrument for BreakerNotes {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        metrics::count(name::BREAKER_OPENED, 1);
        tracing::warn!(
            breaker = "open",
            "SQS keeps failing; spilling first for a while"
        );
    }

    fn on_half_open(&self) {}

    fn on_closed(&self) {
        metrics::count(name::BREAKER_CLOSED, 1);
        tracing::info!(breaker = "closed", "SQS answers again; queueing first");
    }
}

/// Keeps `request` in the spill within `within`: the answer to a webhook whose token cannot
/// be read.
pub async fn defer<S: SpillStore>(
    spill: &S,
    within: std::time::Duration,
    request: &UnverifiedRequest,
) -> Result<(), String> {
    match tokio::time::timeout(within, spill.put_unverified(request)).await {
        Ok(put) => put.map_err(|e| e.0),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

/// Makes an envelope durable: the queue, else the spill; while `breaker` is open, the spill,
/// else the queue. Each store's time is bounded, so the answer to Twilio never waits longer
/// than [`Deadlines::total`].
///
/// A queue that has not answered within [`Deadlines::queue`] is not abandoned: the spill
/// starts beside it (a hedged request), and whichever keeps the event first answers. A slow
/// SendMessage (a retried lost answer, a busy endpoint) then costs the spill's time, not the
/// queue's whole share and the spill's after it, which a caller on the line waiting for the
/// voice webhook's 1 s cannot afford. When both land, the spilled copy reaches the queue again
/// from the drainer: a duplicate with the same idempotency key, which the workers absorb.
pub async fn make_durable<Q: EventQueue, S: SpillStore>(
    queue: &Q,
    spill: &S,
    breaker: &QueueBreaker,
    deadlines: Deadlines,
    envelope: &Envelope,
) -> Result<Delivery, NotDurable> {
    let started = Instant::now();
    if !breaker.0.is_call_permitted() {
        return spill_first(queue, spill, deadlines, envelope).await;
    }
    let sent = send_within(queue, deadlines.total, envelope);
    tokio::pin!(sent);
    let queue_error = match tokio::time::timeout(deadlines.queue, &mut sent).await {
        Ok(Ok(())) => {
            breaker.0.on_success();
            return Ok(Delivery::Queued);
        }
        Ok(Err(e)) => e,
        // Slower than its share: counted against the queue, as a refusal is.
        Err(_) => {
            breaker.0.on_error();
            let left = deadlines.total.saturating_sub(started.elapsed());
            return hedged(sent, spill, left, envelope, deadlines.queue).await;
        }
    };
    breaker.0.on_error();
    let left = deadlines.total.saturating_sub(started.elapsed());
    spilled(
        put_within(spill, left, envelope).await,
        envelope,
        queue_error,
    )
}

/// The queue's send, still going after its share (`share`), raced with the spill's put
/// within `left`: the first to keep the event answers, and the other is waited for only if
/// that one failed.
async fn hedged<S: SpillStore>(
    mut sent: std::pin::Pin<&mut impl std::future::Future<Output = Result<(), String>>>,
    spill: &S,
    left: Duration,
    envelope: &Envelope,
    share: Duration,
) -> Result<Delivery, NotDurable> {
    let put = put_within(spill, left, envelope);
    tokio::pin!(put);
    tokio::select! {
        queued = &mut sent => match queued {
            Ok(()) => Ok(Delivery::Queued),
            Err(queue) => spilled(put.await, envelope, queue),
        },
        put_done = &mut put => match put_done {
            Ok(()) => spilled(Ok(()), envelope, format!("no answer within {share:?}")),
            Err(spill) => sent
                .await
                .map(|()| Delivery::Queued)
                .map_err(|queue| NotDurable { queue, spill }),
        },
    }
}

/// The spill's answer for an event the queue did not take (`queue_error`).
fn spilled(
    put: Result<(), String>,
    envelope: &Envelope,
    queue_error: String,
) -> Result<Delivery, NotDurable> {
    match put {
        Ok(()) => {
            note_spilled(envelope, &queue_error);
            Ok(Delivery::Spilled)
        }
        Err(spill) => Err(NotDurable {
            queue: queue_error,
            spill,
        }),
    }
}

/// The breaker is open: the spill first, with the time it always has; the queue only when
/// the spill refused, with what is left.
async fn spill_first<Q: EventQueue, S: SpillStore>(
    queue: &Q,
    spill: &S,
    deadlines: Deadlines,
    envelope: &Envelope,
) -> Result<Delivery, NotDurable> {
    let started = Instant::now();
    let spill_within = deadlines.total.saturating_sub(deadlines.queue);
    let spill_error = match put_within(spill, spill_within, envelope).await {
        Ok(()) => {
            metrics::count(name::BREAKER_SPILLS, 1);
            note_spilled(envelope, "the queue's breaker is open");
            return Ok(Delivery::Spilled);
        }
        Err(e) => e,
    };
    let left = deadlines.total.saturating_sub(started.elapsed());
    match send_within(queue, left.min(deadlines.queue), envelope).await {
        Ok(()) => Ok(Delivery::Queued),
        Err(queue_error) => Err(NotDurable {
            queue: queue_error,
            spill: spill_error,
        }),
    }
}

async fn send_within<Q: EventQueue>(
    queue: &Q,
    within: std::time::Duration,
    envelope: &Envelope,
) -> Result<(), String> {
    match tokio::time::timeout(within, queue.send(envelope)).await {
        Ok(sent) => sent.map_err(|e| e.0),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

async fn put_within<S: SpillStore>(
    spill: &S,
    within: std::time::Duration,
    envelope: &Envelope,
) -> Result<(), String> {
    match tokio::time::timeout(within, spill.put(envelope)).await {
        Ok(put) => put.map_err(|e| e.0),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

fn note_spilled(envelope: &Envelope, queue_error: &str) {
    metrics::count(name::EVENTS_SPILLED, 1);
    tracing::warn!(
        call_sid = %envelope.call_sid,
        kind = envelope.kind.as_str(),
        queue_error,
        "SQS did not take the event; spilled it for the drainer"
    );
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
    /// Requests accepted before their signature could be checked, checked now and queued.
    pub verified: usize,
    /// ... or refused now (not from Twilio, or malformed) and deleted.
    pub refused: usize,
}

/// The drainer: lists the spill, re-enqueues each event and deletes it once SQS took it; a
/// request spilled unverified is checked first by `verifier`, and deleted if it fails.
pub struct SpillDrainer<Q, V = NoVerifier> {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// The queue of each pipeline.
    pub queues: Vec<(WorkQueue, Q)>,
    pub verifier: V,
}

/// What a drain run has learnt, shared by the objects it drains at once.
#[derive(Default)]
struct RunState {
    queue_refused: AtomicBool,
    token_unavailable: AtomicBool,
}

/// What the check of an unverified request found.
enum Checked {
    Event(Envelope),
    /// Not from Twilio or malformed: deleted.
    Refused,
    /// Not an unverified request of ours: left for ops.
    Unreadable,
}

/// What draining one object did.
enum DrainedOne {
    Requeued,
    Verified,
    Refused,
    Unreadable,
    /// Left unread for the next run: an object before it found SQS or the token unavailable
    /// (and logged why, once).
    Waits,
}

impl<Q: EventQueue, V: VerifyLater> SpillDrainer<Q, V> {
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
        // event is three requests (get, send, delete) that mostly wait. What one object finds
        // out holds for the rest of the run: once SQS refuses a send, or the token cannot be
        // had, the objects that need it wait for the next run unread (a run every minute
        // through an outage would otherwise read and send the whole spill each time).
        // The first object goes alone, a probe: through an outage a run then costs one read.
        let run = RunState::default();
        let run = &run;
        let mut outcomes: Vec<Result<DrainedOne, String>> = Vec::new();
        let rest = match keys.split_first() {
            Some((probe, rest)) => {
                outcomes.push(self.drain_logged(probe, run).await);
                rest
            }
            None => &[],
        };
        outcomes.extend(
            futures::stream::iter(rest)
                .take_while(|_| std::future::ready(Instant::now() < deadline))
                .map(|key| self.drain_logged(key, run))
                .buffer_unordered(DRAIN_CONCURRENCY)
                .collect::<Vec<_>>()
                .await,
        );
        for outcome in outcomes {
            match outcome {
                Ok(DrainedOne::Requeued) => drained.drained += 1,
                Ok(DrainedOne::Verified) => {
                    drained.drained += 1;
                    drained.verified += 1;
                }
                Ok(DrainedOne::Refused) => drained.refused += 1,
                Ok(DrainedOne::Unreadable) => drained.unreadable += 1,
                Ok(DrainedOne::Waits) | Err(_) => {}
            }
        }
        drained.left = drained.found - drained.drained - drained.refused;
        metrics::count(name::DEFERRED_VERIFIED, drained.verified as u64);
        metrics::count(name::DEFERRED_REFUSED, drained.refused as u64);
        metrics::count(name::SPILL_DRAINED, drained.drained as u64);
        metrics::count(name::SPILL_DEPTH, drained.left as u64);
        tracing::info!(
            found = drained.found,
            drained = drained.drained,
            left = drained.left,
            unreadable = drained.unreadable,
            verified = drained.verified,
            refused = drained.refused,
            outcome = if drained.left == 0 { "empty" } else { "left" },
            "spill drained"
        );
        metrics::flush();
        drained
    }

    async fn drain_logged(&self, key: &str, run: &RunState) -> Result<DrainedOne, String> {
        let outcome = self.drain_one(key, run).await;
        if let Err(e) = &outcome {
            tracing::warn!(key, error = e, "spilled event not re-enqueued yet");
        }
        outcome
    }

    /// One object onto its queue (checked first when it was spilled unverified).
    async fn drain_one(&self, key: &str, run: &RunState) -> Result<DrainedOne, String> {
        let unverified = is_unverified_key(key);
        if run.queue_refused.load(Ordering::Relaxed)
            || (unverified && run.token_unavailable.load(Ordering::Relaxed))
        {
            return Ok(DrainedOne::Waits);
        }
        let body = self.read(key).await?;
        let envelope = if unverified {
            match self.check(key, &body).await {
                Ok(Checked::Event(envelope)) => envelope,
                Ok(Checked::Refused) => return Ok(DrainedOne::Refused),
                Ok(Checked::Unreadable) => return Ok(DrainedOne::Unreadable),
                Err(why) => {
                    run.token_unavailable.store(true, Ordering::Relaxed);
                    return Err(why);
                }
            }
        } else {
            match std::str::from_utf8(&body)
                .map_err(|e| e.to_string())
                .and_then(|text| Envelope::from_json(text).map_err(|e| e.to_string()))
            {
                Ok(envelope) if kind_of_key(key) == Some(envelope.kind) => envelope,
                Ok(_) | Err(_) => {
                    tracing::error!(key, "not a spilled envelope of this stack; left in place");
                    return Ok(DrainedOne::Unreadable);
                }
            }
        };
        let pipeline = WorkQueue::of(envelope.kind);
        let (_, queue) = self
            .queues
            .iter()
            .find(|(p, _)| *p == pipeline)
            .ok_or_else(|| format!("no queue for {pipeline}"))?;
        if let Err(e) = queue.send(&envelope).await {
            run.queue_refused.store(true, Ordering::Relaxed);
            return Err(e.0);
        }
        // Deleted only now: had the send failed, the object would wait for the next run.
        self.delete(key).await?;
        tracing::info!(
            call_sid = %envelope.call_sid,
            kind = envelope.kind.as_str(),
            outcome = if unverified { "verified" } else { "re-enqueued" },
            "spilled event re-enqueued"
        );
        Ok(if unverified {
            DrainedOne::Verified
        } else {
            DrainedOne::Requeued
        })
    }

    /// What the check of an unverified request finds; an error when it must wait (the token
    /// still unreadable).
    async fn check(&self, key: &str, body: &[u8]) -> Result<Checked, String> {
        let request = match serde_json::from_slice::<UnverifiedRequest>(body) {
            Ok(request) if kind_of_key(key) == Some(request.kind) => request,
            Ok(_) | Err(_) => {
                tracing::error!(
                    key,
                    "not an unverified request of this stack; left in place"
                );
                return Ok(Checked::Unreadable);
            }
        };
        match self.verifier.envelope(&request).await {
            Ok(envelope) => Ok(Checked::Event(envelope)),
            Err(Unverifiable::NotYet(why)) => Err(why),
            Err(Unverifiable::Refused(why)) => {
                tracing::warn!(
                    key,
                    kind = request.kind.as_str(),
                    outcome = "refused",
                    reason = why,
                    "a request spilled unverified failed its checks; deleted"
                );
                self.delete(key).await?;
                Ok(Checked::Refused)
            }
        }
    }

    async fn read(&self, key: &str) -> Result<bytes::Bytes, String> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| crate::aws::error_summary(&e))?;
        object
            .body
            .collect()
            .await
            .map(aws_sdk_s3::primitives::AggregatedBytes::into_bytes)
            .map_err(|e| e.to_string())
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| crate::aws::error_summary(&e))
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
