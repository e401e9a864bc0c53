//! Calls: what the status worker applies, and the rules it applies them by.
//!
//! Twilio delivers at least once and out of order. Each event is applied once (by its
//! idempotency key) and never moves a call backwards:
//! - **applied**: its key is new and it is newer than the stored state (status rank, then
//!   sequence number; a terminal status is final, `moves_forward`);
//! - **duplicate**: its key was seen before: only a counter moves;
//! - **late**: its key is new but the state is already past it: it is kept in the call's
//!   timeline as not applied.
//!
//! The timeline keeps every status received, applied or not, each with the envelope it came
//! in, so that a replay ([`replay`]) can rebuild the call. It holds at most
//! [`MAX_TIMELINE_ENTRIES`] entries and [`MAX_TIMELINE_BYTES`] of them (a real call has under
//! ten); past that an in-order event is still applied and every event is counted in
//! `timeline_overflow` rather than listed, so a flood of distinct signed deliveries can
//! neither grow the item past DynamoDB's 400 KB nor keep the real `completed` out.
//!
//! The domain lives here, behind [`CallStore`]: [`dynamodb`] keeps calls in DynamoDB,
//! [`memory`] in memory for tests of the logic around it; [`conference`] folds rooms,
//! [`worker`] applies a queue batch, [`replay`] rebuilds a call for an operator.

pub mod conference;
pub mod dynamodb;
pub mod memory;
pub mod replay;
pub mod worker;

use serde::Serialize;

pub use conference::ConferenceEvent;
pub use dynamodb::DynamoCallStore;
pub use memory::MemoryCallStore;
pub use replay::Replayed;

use crate::events::{Envelope, EventKind};
use crate::twilio::params::ParamError;
use crate::twilio::{CallStatus, StatusCallback};

/// At most this many timeline entries per call (with the keys they carry).
pub const MAX_TIMELINE_ENTRIES: usize = 64;
/// At most this many bytes of timeline entries per call, envelopes included.
pub const MAX_TIMELINE_BYTES: usize = 128 * 1024;

/// A call-status event, as the worker applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub call_sid: String,
    pub account_sid: String,
    pub status: CallStatus,
    pub sequence_number: Option<u32>,
    pub timestamp: Option<String>,
    pub received_at: String,
    pub idempotency_key: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<String>,
    pub duration_secs: Option<u32>,
    pub parent_call_sid: Option<String>,
    /// The envelope as it arrived, kept in the timeline so that a replay re-applies exactly
    /// what arrived ([`replay`]).
    pub envelope: String,
}

/// A call the voice webhook answered: which flow took it, and who called whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStarted {
    pub call_sid: String,
    pub account_sid: String,
    pub flow: String,
    pub received_at: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<String>,
    /// The envelope as it arrived (kept for replays).
    pub envelope: String,
}

/// What the status worker applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Status(StatusEvent),
    Started(CallStarted),
    /// A conference room's event (`crate::conference`).
    Conference(ConferenceEvent),
}

impl CallEvent {
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, EventError> {
        match envelope.kind {
            EventKind::CallStatus => StatusEvent::from_envelope(envelope).map(Self::Status),
            EventKind::CallStarted => {
                let param = |name: &str| envelope.params.get(name).map(str::to_owned);
                Ok(Self::Started(CallStarted {
                    call_sid: envelope.call_sid.clone(),
                    account_sid: envelope.account_sid.clone(),
                    flow: envelope.flow.clone().ok_or(EventError::NoFlow)?,
                    received_at: envelope.received_at.clone(),
                    from: param("From"),
                    to: param("To"),
                    direction: param("Direction"),
                    envelope: envelope.to_json(),
                }))
            }
            EventKind::ConferenceStatus => {
                ConferenceEvent::from_envelope(envelope).map(Self::Conference)
            }
            // Recording events belong on the recording queue.
            other => Err(EventError::WrongKind(other)),
        }
    }

    /// The call the event is about; a room's own events (start, end) name the room.
    pub fn call_sid(&self) -> &str {
        match self {
            Self::Status(e) => &e.call_sid,
            Self::Started(e) => &e.call_sid,
            Self::Conference(e) => e.call_sid.as_deref().unwrap_or(&e.conference_sid),
        }
    }

    /// What the event's writes go to, the call or the room: a batch applies one subject's
    /// events one at a time.
    pub fn subject(&self) -> &str {
        match self {
            Self::Conference(e) => &e.conference_sid,
            other => other.call_sid(),
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Self::Status(_) => EventKind::CallStatus,
            Self::Started(_) => EventKind::CallStarted,
            Self::Conference(_) => EventKind::ConferenceStatus,
        }
    }

    /// RFC 3339, when our webhook accepted it.
    pub fn received_at(&self) -> &str {
        match self {
            Self::Status(e) => &e.received_at,
            Self::Started(e) => &e.received_at,
            Self::Conference(e) => &e.received_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("envelope kind {0:?} is not a call event")]
    WrongKind(EventKind),
    #[error("envelope params are not the callback its kind names: {0}")]
    Params(#[from] ParamError),
    #[error("call.started envelope without a flow")]
    NoFlow,
}

impl StatusEvent {
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, EventError> {
        if envelope.kind != EventKind::CallStatus {
            return Err(EventError::WrongKind(envelope.kind));
        }
        let cb = StatusCallback::parse(&envelope.params)?;
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(Self {
            call_sid: cb.call_sid.to_owned(),
            account_sid: cb.account_sid.to_owned(),
            status: cb.status,
            sequence_number: cb.sequence_number,
            timestamp: owned(cb.timestamp),
            received_at: envelope.received_at.clone(),
            idempotency_key: envelope.idempotency_key.clone(),
            from: owned(cb.from),
            to: owned(cb.to),
            direction: owned(cb.direction),
            duration_secs: cb.duration_secs,
            parent_call_sid: owned(cb.parent_call_sid),
            envelope: envelope.to_json(),
        })
    }

    /// The stored sequence number: -1 when Twilio sent none, so any numbered event is newer.
    pub(crate) fn seq(&self) -> i64 {
        self.sequence_number.map_or(-1, i64::from)
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The event moved the call forward.
    Applied,
    /// Seen before (same idempotency key): nothing changed.
    Duplicate,
    /// Older than the call's state: kept in the timeline, not applied.
    Late,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Late => "late",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the call store failed: {0}")]
pub struct StoreError(pub String);

/// Where call state lives.
pub trait CallStore: Send + Sync {
    fn apply_status(
        &self,
        event: &StatusEvent,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// Records which flow answered the call; a redelivery changes nothing.
    fn record_started(
        &self,
        event: &CallStarted,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Keeps a conference event once and brings its room up to date, whatever order the
    /// room's events arrive in.
    fn apply_conference(
        &self,
        event: &ConferenceEvent,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send;

    /// Applies any event the status queue carries.
    fn apply(&self, event: &CallEvent) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        async move {
            match event {
                CallEvent::Status(e) => self.apply_status(e).await,
                CallEvent::Started(e) => self.record_started(e).await.map(|()| Outcome::Applied),
                CallEvent::Conference(e) => self.apply_conference(e).await,
            }
        }
    }
}

/// One entry of a call's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub status: String,
    pub sequence_number: Option<i64>,
    pub timestamp: Option<String>,
    pub received_at: String,
    pub idempotency_key: String,
    pub applied: bool,
    /// Entered by reconciliation (Twilio's REST API), not delivered by a callback.
    pub reconciled: bool,
}

/// A call as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub call_sid: String,
    /// The flow that answered (from `call.started`).
    pub flow: Option<String>,
    pub status: Option<String>,
    pub sequence_number: Option<i64>,
    pub duplicates: u64,
    pub timeline: Vec<TimelineEntry>,
    /// Events the timeline had no room for: counted, not listed.
    pub timeline_overflow: u64,
    /// The conference rooms (`ConferenceSid`) the call joined, sorted.
    pub conferences: Vec<String>,
}

impl CallRecord {
    pub fn late_events(&self) -> usize {
        self.timeline.iter().filter(|e| !e.applied).count()
    }
}

/// What an entry weighs against [`MAX_TIMELINE_BYTES`]: its strings (DynamoDB counts
/// attribute names and values; the fixed part is a few dozen bytes).
pub(crate) fn entry_size(event: &StatusEvent) -> usize {
    64 + event.envelope.len()
        + event.idempotency_key.len()
        + event.received_at.len()
        + event.timestamp.as_deref().map_or(0, str::len)
}

/// The ordering rule: whether `event` moves a call whose stored state is `stored` (status
/// rank, sequence number) forward. Higher rank wins; at equal rank a higher sequence
/// number, unless the status is terminal (a terminal status is final).
pub(crate) fn moves_forward(stored: Option<(i64, Option<i64>)>, event: &StatusEvent) -> bool {
    let rank = i64::from(event.status.rank());
    match stored {
        None => true,
        Some((stored, _)) if stored < rank => true,
        Some((stored, Some(seq))) => {
            stored == rank && stored < i64::from(CallStatus::TERMINAL_RANK) && seq < event.seq()
        }
        _ => false,
    }
}
