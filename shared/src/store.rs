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

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde::Serialize;

use crate::events::{Envelope, EventKind};
use crate::twilio::params::ParamError;
use crate::twilio::{CallStatus, StatusCallback};

/// The key attributes of the calls table (the template declares the same).
pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
const STATE_SK: &str = "STATE";
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
            // Recording events belong on the recording queue.
            other => Err(EventError::WrongKind(other)),
        }
    }

    pub fn call_sid(&self) -> &str {
        match self {
            Self::Status(e) => &e.call_sid,
            Self::Started(e) => &e.call_sid,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            Self::Status(_) => EventKind::CallStatus,
            Self::Started(_) => EventKind::CallStarted,
        }
    }

    /// RFC 3339, when our webhook accepted it.
    pub fn received_at(&self) -> &str {
        match self {
            Self::Status(e) => &e.received_at,
            Self::Started(e) => &e.received_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("envelope kind {0:?} is not a call event")]
    WrongKind(EventKind),
    #[error("envelope params are not a status callback: {0}")]
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

    /// Applies any event the status queue carries.
    fn apply(&self, event: &CallEvent) -> impl Future<Output = Result<Outcome, StoreError>> + Send {
        async move {
            match event {
                CallEvent::Status(e) => self.apply_status(e).await,
                CallEvent::Started(e) => self.record_started(e).await.map(|()| Outcome::Applied),
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
}

impl CallRecord {
    pub fn late_events(&self) -> usize {
        self.timeline.iter().filter(|e| !e.applied).count()
    }
}

/// [`CallStore`] on DynamoDB.
#[derive(Clone)]
pub struct DynamoCallStore {
    client: Client,
    table: String,
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn call_key(call_sid: &str) -> HashMap<String, AttributeValue> {
    item_key(call_sid, STATE_SK)
}

fn item_key(call_sid: &str, sort_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(format!("CALL#{call_sid}"))),
        (SORT_KEY.to_owned(), s(sort_key)),
    ])
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
    async fn write_in_order(
        &self,
        event: &StatusEvent,
    ) -> Result<Result<(), Option<HashMap<String, AttributeValue>>>, StoreError> {
        let mut set = vec![
            "#status = :status",
            "#rank = :rank",
            "#seq = :seq",
            "#updated = :received",
            "#acct = :acct",
            "#sid = :sid",
            "#tl = list_append(if_not_exists(#tl, :empty), :entry)",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .condition_expression(
                "NOT contains(#keys, :key) AND (attribute_not_exists(#rank) OR #rank < :rank \
                 OR (#rank = :rank AND #rank < :terminal AND #seq < :seq))",
            )
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#rank", "status_rank")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#acct", "account_sid")
            .expression_attribute_names("#sid", "call_sid")
            .expression_attribute_names("#tl", "timeline")
            .expression_attribute_names("#keys", "keys")
            .expression_attribute_values(":status", s(event.status.as_str()))
            .expression_attribute_values(":rank", n(event.status.rank()))
            .expression_attribute_values(":terminal", n(CallStatus::TERMINAL_RANK))
            .expression_attribute_values(":seq", n(event.seq()))
            .expression_attribute_values(":received", s(&event.received_at))
            .expression_attribute_values(":acct", s(&event.account_sid))
            .expression_attribute_values(":sid", s(&event.call_sid))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":entry", timeline_entry(event, true))
            .expression_attribute_values(":key", s(&event.idempotency_key))
            .expression_attribute_values(
                ":keyset",
                AttributeValue::Ss(vec![event.idempotency_key.clone()]),
            );
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
        let expression = format!("SET {} ADD #keys :keyset", set.join(", "));

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

    /// Records a late event in the timeline, once.
    async fn record_late(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .update_expression(
                "SET #tl = list_append(if_not_exists(#tl, :empty), :entry) ADD #keys :keyset",
            )
            .condition_expression("NOT contains(#keys, :key)")
            .expression_attribute_names("#tl", "timeline")
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
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // A concurrent delivery of the same late event recorded it first.
                self.count_duplicate(event).await
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn count_duplicate(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .update_expression("ADD #dups :one")
            .expression_attribute_names("#dups", "duplicates")
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(store_error)?;
        Ok(Outcome::Duplicate)
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
        // Deliveries absorbed the first time are history the replay keeps.
        if let Some(AttributeValue::N(dups)) = source.get("duplicates") {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(call_key(call_sid)))
                .update_expression("ADD #dups :n")
                .expression_attribute_names("#dups", "duplicates")
                .expression_attribute_values(":n", AttributeValue::N(dups.clone()))
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

    async fn apply_status(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        match self.write_in_order(event).await? {
            Ok(()) => Ok(Outcome::Applied),
            Err(Some(old)) if holds_key(&old, &event.idempotency_key) => {
                self.count_duplicate(event).await
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
            .map(|e| TimelineEntry {
                status: text(e, "status").unwrap_or_default(),
                sequence_number: number(e, "seq").filter(|&s| s >= 0),
                timestamp: text(e, "at"),
                received_at: text(e, "received_at").unwrap_or_default(),
                idempotency_key: text(e, "key").unwrap_or_default(),
                applied: matches!(e.get("applied"), Some(AttributeValue::Bool(true))),
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
    }
}
