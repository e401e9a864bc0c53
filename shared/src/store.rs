//! Call state in DynamoDB: applied once per event, never backwards.
//!
//! One item per call (`pk = CALL#<CallSid>`, `sk = STATE`) holds the current state, the
//! timeline of every status received (applied or not, each with the envelope it came in, so
//! that [`DynamoCallStore::replay_call`] can rebuild the call) and the set of idempotency
//! keys seen.
//!
//! How an event is told apart, with one conditional write on the in-order path:
//! - **in order**: the write's condition holds (key unseen, and the event is newer than the
//!   stored state by status rank, then sequence number); state and timeline change at once.
//! - **duplicate**: the condition fails and the old item (returned by
//!   `ReturnValuesOnConditionCheckFailure=ALL_OLD`, no second read) already holds the key.
//!   Only a counter is bumped.
//! - **late**: the condition fails and the key is new: the event is older than the state. It is
//!   appended to the timeline as not applied (a second, conditional write, so a redelivered
//!   late event is still recorded once).
//!
//! The item stays far below DynamoDB's 400 KB whatever arrives: the timeline holds at most
//! [`MAX_TIMELINE_ENTRIES`] entries and [`MAX_TIMELINE_BYTES`] of them (a real call has under
//! ten). Past that, an in-order event is still applied (a second write, without its entry)
//! and every event is counted in `timeline_overflow` rather than listed, so a flood of
//! distinct signed deliveries can neither grow the item nor keep the real `completed` out.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::Serialize;

use crate::conference::ConferenceEvent;
use crate::events::{Envelope, EventKind};
use crate::metrics::{self, name};
use crate::twilio::params::ParamError;
use crate::twilio::{CallStatus, StatusCallback};

/// The key attributes of the calls table (the template declares the same).
pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
/// The sort key of a call's (or a room's) current state.
pub(crate) const STATE_SK: &str = "STATE";
/// At most this many timeline entries per call (with the keys they carry).
pub const MAX_TIMELINE_ENTRIES: usize = 64;
/// At most this many bytes of timeline entries per call, envelopes included.
pub const MAX_TIMELINE_BYTES: usize = 128 * 1024;

/// A call's state as it was before a replay began, kept until the replay finishes so that
/// a replay cut short resumes from it instead of from a half-rebuilt state.
const REPLAY_BACKUP_SK: &str = "STATE#REPLAY-BACKUP";

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
    /// what arrived ([`DynamoCallStore::replay_call`]).
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
    fn seq(&self) -> i64 {
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

/// [`CallStore`] on DynamoDB.
#[derive(Clone)]
pub struct DynamoCallStore {
    pub(crate) client: Client,
    pub(crate) table: String,
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn call_key(call_sid: &str) -> HashMap<String, AttributeValue> {
    item_key(call_sid, STATE_SK)
}

fn item_key(call_sid: &str, sort_key: &str) -> HashMap<String, AttributeValue> {
    table_key(format!("CALL#{call_sid}"), sort_key)
}

/// The key of an item of the calls table: `CALL#…` for calls, `CONF#…` for rooms.
pub(crate) fn table_key(partition: String, sort_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(partition)),
        (SORT_KEY.to_owned(), s(sort_key)),
    ])
}

/// What an entry weighs against [`MAX_TIMELINE_BYTES`]: its strings (DynamoDB counts
/// attribute names and values; the fixed part is a few dozen bytes).
fn entry_size(event: &StatusEvent) -> usize {
    64 + event.envelope.len()
        + event.idempotency_key.len()
        + event.received_at.len()
        + event.timestamp.as_deref().map_or(0, str::len)
}

fn timeline_entry(event: &StatusEvent, applied: bool) -> AttributeValue {
    let mut entry = HashMap::from([
        ("status".to_owned(), s(event.status.as_str())),
        ("seq".to_owned(), n(event.seq())),
        ("received_at".to_owned(), s(&event.received_at)),
        ("key".to_owned(), s(&event.idempotency_key)),
        ("applied".to_owned(), AttributeValue::Bool(applied)),
        ("envelope".to_owned(), s(&event.envelope)),
    ]);
    if let Some(ts) = &event.timestamp {
        entry.insert("at".to_owned(), s(ts));
    }
    AttributeValue::L(vec![AttributeValue::M(entry)])
}

fn holds_key(item: &HashMap<String, AttributeValue>, key: &str) -> bool {
    matches!(item.get("keys"), Some(AttributeValue::Ss(keys)) if keys.iter().any(|k| k == key))
}

/// The condition that the timeline has room for one more entry of `:size` bytes (`:room` is
/// [`MAX_TIMELINE_BYTES`] less the entry, as DynamoDB conditions cannot add).
const HAS_ROOM: &str = "(attribute_not_exists(#tl) OR size(#tl) < :cap) \
                        AND (attribute_not_exists(#tlb) OR #tlb <= :room)";

fn with_room(
    request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    event: &StatusEvent,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    let size = entry_size(event);
    request
        .expression_attribute_names("#tl", "timeline")
        .expression_attribute_names("#tlb", "timeline_bytes")
        .expression_attribute_values(":cap", n(MAX_TIMELINE_ENTRIES))
        .expression_attribute_values(":size", n(size))
        .expression_attribute_values(":room", n(MAX_TIMELINE_BYTES.saturating_sub(size)))
}

fn number_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// Whether the stored timeline has room for `event`'s entry ([`HAS_ROOM`], client side).
fn has_room(item: &HashMap<String, AttributeValue>, event: &StatusEvent) -> bool {
    let entries = match item.get("timeline") {
        Some(AttributeValue::L(l)) => l.len(),
        _ => 0,
    };
    let bytes = number_of(item, "timeline_bytes").unwrap_or(0);
    entries < MAX_TIMELINE_ENTRIES
        && bytes <= MAX_TIMELINE_BYTES.saturating_sub(entry_size(event)) as i64
}

/// Whether `event` would move the stored state forward (the in-order write's condition).
fn is_newer(item: &HashMap<String, AttributeValue>, event: &StatusEvent) -> bool {
    let rank = i64::from(event.status.rank());
    match (number_of(item, "status_rank"), number_of(item, "seq")) {
        (None, _) => true,
        (Some(stored), _) if stored < rank => true,
        (Some(stored), Some(seq)) => {
            stored == rank && stored < i64::from(CallStatus::TERMINAL_RANK) && seq < event.seq()
        }
        _ => false,
    }
}

pub(crate) fn store_error<E>(e: aws_sdk_dynamodb::error::SdkError<E>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError(crate::aws::error_summary(&e))
}

impl DynamoCallStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The one write of the in-order path. `Err(Some(old))` when the condition failed.
    /// `listed`: with its timeline entry, if the timeline has room (else the condition
    /// fails); without: applied and counted as overflow.
    async fn write_in_order(
        &self,
        event: &StatusEvent,
        listed: bool,
    ) -> Result<Result<(), Option<HashMap<String, AttributeValue>>>, StoreError> {
        let mut set = vec![
            "#status = :status",
            "#rank = :rank",
            "#seq = :seq",
            "#updated = :received",
            "#acct = :acct",
            "#sid = :sid",
        ];
        let newer = "(attribute_not_exists(#rank) OR #rank < :rank \
                     OR (#rank = :rank AND #rank < :terminal AND #seq < :seq))";
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#rank", "status_rank")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#acct", "account_sid")
            .expression_attribute_names("#sid", "call_sid")
            .expression_attribute_names("#keys", "keys")
            .expression_attribute_values(":status", s(event.status.as_str()))
            .expression_attribute_values(":rank", n(event.status.rank()))
            .expression_attribute_values(":terminal", n(CallStatus::TERMINAL_RANK))
            .expression_attribute_values(":seq", n(event.seq()))
            .expression_attribute_values(":received", s(&event.received_at))
            .expression_attribute_values(":acct", s(&event.account_sid))
            .expression_attribute_values(":sid", s(&event.call_sid))
            .expression_attribute_values(":key", s(&event.idempotency_key));
        let (condition, added) = if listed {
            set.push("#tl = list_append(if_not_exists(#tl, :empty), :entry)");
            request = with_room(request, event)
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(":entry", timeline_entry(event, true))
                .expression_attribute_values(
                    ":keyset",
                    AttributeValue::Ss(vec![event.idempotency_key.clone()]),
                );
            (
                format!("NOT contains(#keys, :key) AND {newer} AND {HAS_ROOM}"),
                "ADD #keys :keyset, #tlb :size",
            )
        } else {
            request = request
                .expression_attribute_names("#overflow", "timeline_overflow")
                .expression_attribute_values(":one", n(1));
            (
                format!("NOT contains(#keys, :key) AND {newer}"),
                "ADD #overflow :one",
            )
        };
        request = request.condition_expression(condition);
        // Call details ride along when this callback carries them.
        let details = [
            (
                "#from",
                "from_number",
                ":from",
                event.from.as_deref().map(s),
            ),
            ("#to", "to_number", ":to", event.to.as_deref().map(s)),
            (
                "#dir",
                "direction",
                ":dir",
                event.direction.as_deref().map(s),
            ),
            ("#dur", "duration_secs", ":dur", event.duration_secs.map(n)),
            (
                "#parent",
                "parent_call_sid",
                ":parent",
                event.parent_call_sid.as_deref().map(s),
            ),
        ];
        let mut detail_sets = Vec::new();
        for (alias, name, placeholder, value) in details {
            if let Some(value) = value {
                request = request
                    .expression_attribute_names(alias, name)
                    .expression_attribute_values(placeholder, value);
                detail_sets.push(format!("{alias} = {placeholder}"));
            }
        }
        set.extend(detail_sets.iter().map(String::as_str));
        let expression = format!("SET {} {added}", set.join(", "));

        match request.update_expression(expression).send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Err(failed.item().cloned()))
                }
                _ => Err(store_error(e)),
            },
        }
    }

    /// Records a late event in the timeline, once; with no room left, counts it.
    async fn record_late(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        let result = with_room(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(call_key(&event.call_sid))),
            event,
        )
        .update_expression(
            "SET #tl = list_append(if_not_exists(#tl, :empty), :entry) ADD #keys :keyset, #tlb :size",
        )
        .condition_expression(format!("NOT contains(#keys, :key) AND {HAS_ROOM}"))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .expression_attribute_names("#keys", "keys")
        .expression_attribute_values(":empty", AttributeValue::L(vec![]))
        .expression_attribute_values(":entry", timeline_entry(event, false))
        .expression_attribute_values(":key", s(&event.idempotency_key))
        .expression_attribute_values(
            ":keyset",
            AttributeValue::Ss(vec![event.idempotency_key.clone()]),
        )
        .send()
        .await;
        match result {
            Ok(_) => Ok(Outcome::Late),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        // A concurrent delivery of the same late event recorded it first.
                        Some(old) if holds_key(old, &event.idempotency_key) => {
                            self.count(event, "duplicates").await?;
                            Ok(Outcome::Duplicate)
                        }
                        _ => {
                            self.count(event, "timeline_overflow").await?;
                            Ok(Outcome::Late)
                        }
                    }
                }
                _ => Err(store_error(e)),
            },
        }
    }

    async fn count_duplicate(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        self.count(event, "duplicates").await?;
        Ok(Outcome::Duplicate)
    }

    /// Adds one to a counter of the call's item.
    async fn count(&self, event: &StatusEvent, counter: &str) -> Result<(), StoreError> {
        if counter == "timeline_overflow" {
            metrics::count(name::TIMELINE_OVERFLOW, 1);
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .update_expression("ADD #counter :one")
            .expression_attribute_names("#counter", counter)
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Reads a call's state and timeline.
    pub async fn get_call(&self, call_sid: &str) -> Result<Option<CallRecord>, StoreError> {
        let item = self.get_raw(call_sid, STATE_SK).await?;
        Ok(item.map(|item| call_record(call_sid, &item)))
    }

    async fn delete(&self, call_sid: &str, sort_key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(item_key(call_sid, sort_key)))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn get_raw(
        &self,
        call_sid: &str,
        sort_key: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item_key(call_sid, sort_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(output.item)
    }

    /// Rebuilds a call's state from its stored events, as a first-time run would leave it:
    /// after a worker fix, this re-applies every event the call received (each once, in the
    /// order our webhooks accepted them) with the store's own code. `None`: no such call.
    ///
    /// Safe to cut short: the old state is kept aside first and a second run resumes from it.
    /// Meant for calls that have ended: a live event arriving mid-replay is applied, and
    /// the replayed older events are then recorded as late.
    pub async fn replay_call(&self, call_sid: &str) -> Result<Option<Replayed>, StoreError> {
        let backup = self.get_raw(call_sid, REPLAY_BACKUP_SK).await?;
        let resuming = backup.is_some();
        let Some(source) = (match backup {
            Some(backup) => Some(backup),
            None => self.get_raw(call_sid, STATE_SK).await?,
        }) else {
            return Ok(None);
        };
        let events = stored_events(&source)?;
        if !resuming {
            let mut backup = source.clone();
            backup.insert(SORT_KEY.to_owned(), s(REPLAY_BACKUP_SK));
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(backup))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .send()
                .await
                .map_err(store_error)?;
        }
        self.delete(call_sid, STATE_SK).await?;
        let mut replayed = Replayed {
            events: events.len(),
            resumed: resuming,
            ..Replayed::default()
        };
        for event in &events {
            match self.apply(event).await? {
                Outcome::Applied => replayed.applied += 1,
                Outcome::Late => replayed.late += 1,
                Outcome::Duplicate => replayed.duplicates += 1,
            }
        }
        // Deliveries absorbed the first time, events the timeline had no room for (which
        // it cannot re-apply: they were not listed) and the rooms the call was in (their
        // events live with the room) are history the replay keeps.
        for kept in ["duplicates", "timeline_overflow", "conferences"] {
            let Some(value @ (AttributeValue::N(_) | AttributeValue::Ss(_))) = source.get(kept)
            else {
                continue;
            };
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(call_key(call_sid)))
                .update_expression("ADD #kept :n")
                .expression_attribute_names("#kept", kept)
                .expression_attribute_values(":n", value.clone())
                .send()
                .await
                .map_err(store_error)?;
        }
        self.delete(call_sid, REPLAY_BACKUP_SK).await?;
        Ok(Some(replayed))
    }

    /// The calls with an event received in `[from, to]` (RFC 3339, UTC): the ones whose
    /// last applied event or whose start falls in the window. A filtered scan: fine for an
    /// operator's occasional replay, not for a hot path.
    pub async fn calls_between(&self, from: &str, to: &str) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(
                "#sk = :state AND (#updated BETWEEN :from AND :to OR #started BETWEEN :from AND :to)",
            )
            .projection_expression("#sid")
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#started", "started_at")
            .expression_attribute_names("#sid", "call_sid")
            .expression_attribute_values(":state", s(STATE_SK))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .into_paginator()
            .items()
            .send();
        let mut calls = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(store_error)?;
            if let Some(AttributeValue::S(sid)) = item.get("call_sid") {
                calls.push(sid.clone());
            }
        }
        calls.sort();
        Ok(calls)
    }
}

/// What [`DynamoCallStore::replay_call`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Events re-applied (the call's start counts as one).
    pub events: usize,
    pub applied: usize,
    pub late: usize,
    pub duplicates: usize,
    /// A replay cut short before was finished from the state it had set aside.
    pub resumed: bool,
}

/// A stored call's events (its start, then its timeline) in the order our webhooks accepted
/// them.
fn stored_events(item: &HashMap<String, AttributeValue>) -> Result<Vec<CallEvent>, StoreError> {
    let decode = |json: &str| {
        Envelope::from_json(json)
            .map_err(|e| StoreError(e.to_string()))
            .and_then(|envelope| {
                CallEvent::from_envelope(&envelope).map_err(|e| StoreError(e.to_string()))
            })
    };
    let mut events = Vec::new();
    if let Some(AttributeValue::S(json)) = item.get("started_envelope") {
        events.push(decode(json)?);
    }
    if let Some(AttributeValue::L(entries)) = item.get("timeline") {
        for entry in entries.iter().filter_map(|e| e.as_m().ok()) {
            match entry.get("envelope") {
                Some(AttributeValue::S(json)) => events.push(decode(json)?),
                _ => {
                    return Err(StoreError(
                        "a timeline entry has no stored envelope (written before envelopes were \
                         kept); this call cannot be replayed exactly"
                            .into(),
                    ));
                }
            }
        }
    }
    // In the order our webhooks accepted them, which is the order a first-time run applies
    // them in: a redrive, or SQS across batches, may have put them in the timeline in
    // another. RFC 3339 strings do not sort as text (fractions vary in length), so parse;
    // a time that does not parse keeps the timeline's order.
    let accepted = |e: &CallEvent| {
        time::OffsetDateTime::parse(
            e.received_at(),
            &time::format_description::well_known::Rfc3339,
        )
        .ok()
    };
    if events.iter().all(|e| accepted(e).is_some()) {
        events.sort_by_key(accepted);
    }
    Ok(events)
}

impl CallStore for DynamoCallStore {
    async fn record_started(&self, event: &CallStarted) -> Result<(), StoreError> {
        // First write wins: a redelivered or re-entered call keeps its first flow.
        let mut sets = vec![
            "#flow = if_not_exists(#flow, :flow)",
            "#started = if_not_exists(#started, :started)",
            "#acct = if_not_exists(#acct, :acct)",
            "#sid = if_not_exists(#sid, :sid)",
            "#envelope = if_not_exists(#envelope, :envelope)",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .expression_attribute_names("#envelope", "started_envelope")
            .expression_attribute_values(":envelope", s(&event.envelope))
            .expression_attribute_names("#flow", "flow")
            .expression_attribute_names("#started", "started_at")
            .expression_attribute_names("#acct", "account_sid")
            .expression_attribute_names("#sid", "call_sid")
            .expression_attribute_values(":flow", s(&event.flow))
            .expression_attribute_values(":started", s(&event.received_at))
            .expression_attribute_values(":acct", s(&event.account_sid))
            .expression_attribute_values(":sid", s(&event.call_sid));
        let details = [
            (
                "#from",
                "from_number",
                ":from",
                &event.from,
                "#from = if_not_exists(#from, :from)",
            ),
            (
                "#to",
                "to_number",
                ":to",
                &event.to,
                "#to = if_not_exists(#to, :to)",
            ),
            (
                "#dir",
                "direction",
                ":dir",
                &event.direction,
                "#dir = if_not_exists(#dir, :dir)",
            ),
        ];
        for (alias, name, placeholder, value, set) in details {
            if let Some(value) = value {
                request = request
                    .expression_attribute_names(alias, name)
                    .expression_attribute_values(placeholder, s(value));
                sets.push(set);
            }
        }
        request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn apply_conference(&self, event: &ConferenceEvent) -> Result<Outcome, StoreError> {
        DynamoCallStore::apply_conference(self, event).await
    }

    async fn apply_status(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        match self.write_in_order(event, true).await? {
            Ok(()) => Ok(Outcome::Applied),
            Err(Some(old)) if holds_key(&old, &event.idempotency_key) => {
                self.count_duplicate(event).await
            }
            // In order, but the timeline is full: applied all the same, without its entry.
            Err(Some(old)) if !has_room(&old, event) && is_newer(&old, event) => {
                metrics::count(name::TIMELINE_OVERFLOW, 1);
                match self.write_in_order(event, false).await? {
                    Ok(()) => Ok(Outcome::Applied),
                    Err(_) => {
                        self.count(event, "timeline_overflow").await?;
                        Ok(Outcome::Late)
                    }
                }
            }
            Err(_) => self.record_late(event).await,
        }
    }
}

fn call_record(call_sid: &str, item: &HashMap<String, AttributeValue>) -> CallRecord {
    let text = |item: &HashMap<String, AttributeValue>, name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let number = |item: &HashMap<String, AttributeValue>, name: &str| match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
        _ => None,
    };
    let timeline = match item.get("timeline") {
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .filter_map(|e| e.as_m().ok())
            .map(|e| {
                let idempotency_key = text(e, "key").unwrap_or_default();
                TimelineEntry {
                    status: text(e, "status").unwrap_or_default(),
                    sequence_number: number(e, "seq").filter(|&s| s >= 0),
                    timestamp: text(e, "at"),
                    received_at: text(e, "received_at").unwrap_or_default(),
                    reconciled: crate::reconcile::is_reconciled(&idempotency_key),
                    idempotency_key,
                    applied: matches!(e.get("applied"), Some(AttributeValue::Bool(true))),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    CallRecord {
        call_sid: call_sid.to_owned(),
        flow: text(item, "flow"),
        status: text(item, "status"),
        sequence_number: number(item, "seq").filter(|&s| s >= 0),
        duplicates: number(item, "duplicates").map_or(0, |d| d.max(0) as u64),
        timeline,
        timeline_overflow: number(item, "timeline_overflow").map_or(0, |d| d.max(0) as u64),
        conferences: match item.get("conferences") {
            Some(AttributeValue::Ss(rooms)) => {
                let mut rooms = rooms.clone();
                rooms.sort();
                rooms
            }
            _ => Vec::new(),
        },
    }
}
