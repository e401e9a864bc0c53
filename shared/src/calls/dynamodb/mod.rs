//! [`CallStore`] on DynamoDB.
//!
//! One item per call (`pk = CALL#<CallSid>`, `sk = STATE`) holds the current state, the
//! timeline and the set of idempotency keys seen. How an event is told apart, with one
//! conditional write on the in-order path:
//! - **in order**: the write's condition holds (key unseen, and the event is newer than the
//!   stored state by status rank, then sequence number); state and timeline change at once.
//! - **duplicate**: the condition fails and the old item (returned by
//!   `ReturnValuesOnConditionCheckFailure=ALL_OLD`, no second read) already holds the key.
//!   Only a counter is bumped.
//! - **late**: the condition fails and the key is new: the event is older than the state. It is
//!   appended to the timeline as not applied (a second, conditional write, so a redelivered
//!   late event is still recorded once).
//!
//! A full timeline costs an in-order event a second write, without its entry. Rooms are in
//! `rooms`.

mod rooms;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::{
    CallRecord, CallStarted, CallStore, ConferenceEvent, MAX_TIMELINE_BYTES, MAX_TIMELINE_ENTRIES,
    Outcome, StatusEvent, StoreError, TimelineEntry, entry_size, moves_forward,
};
use crate::dynamodb::{Item, ItemExt, STATE_SK, call_item_key, get_consistent, n, s, store_error};
use crate::metrics::{self, name};
use crate::twilio::CallStatus;

/// [`CallStore`] on DynamoDB.
#[derive(Clone)]
pub struct DynamoCallStore {
    pub(crate) client: Client,
    pub(crate) table: String,
}

/// The key of a call's state item.
pub(crate) fn call_key(call_sid: &str) -> Item {
    call_item_key(call_sid, STATE_SK)
}

fn timeline_entry(event: &StatusEvent, applied: bool) -> AttributeValue {
    let mut entry = Item::from([
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

fn holds_key(item: &Item, key: &str) -> bool {
    item.string_set("keys")
        .is_some_and(|keys| keys.iter().any(|k| k == key))
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

/// Whether the stored timeline has room for `event`'s entry ([`HAS_ROOM`], client side).
fn has_room(item: &Item, event: &StatusEvent) -> bool {
    let entries = match item.get("timeline") {
        Some(AttributeValue::L(l)) => l.len(),
        _ => 0,
    };
    let bytes: i64 = item.number("timeline_bytes").unwrap_or(0);
    entries < MAX_TIMELINE_ENTRIES
        && bytes <= MAX_TIMELINE_BYTES.saturating_sub(entry_size(event)) as i64
}

/// Whether `event` would move the stored state forward (the in-order write's condition).
fn is_newer(item: &Item, event: &StatusEvent) -> bool {
    let stored = item
        .number("status_rank")
        .map(|rank| (rank, item.number("seq")));
    moves_forward(stored, event)
}

type UpdateRequest = aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;

/// Moves the call forward only when the event is newer ([`moves_forward`], as a DynamoDB
/// condition) and its key unseen.
const IS_NEWER: &str = "NOT contains(#keys, :key) AND (attribute_not_exists(#rank) \
                        OR #rank < :rank OR (#rank = :rank AND #rank < :terminal AND #seq < :seq))";

/// The state the in-order write sets, and its `SET` clauses.
fn with_state(request: UpdateRequest, event: &StatusEvent) -> (UpdateRequest, Vec<String>) {
    let set = [
        "#status = :status",
        "#rank = :rank",
        "#seq = :seq",
        "#updated = :received",
        "#acct = :acct",
        "#sid = :sid",
    ];
    let request = request
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
    (request, set.map(str::to_owned).to_vec())
}

/// What the in-order write adds beside the state: its condition, a `SET` clause and its
/// `ADD` clause.
struct Addition {
    condition: String,
    set: Option<&'static str>,
    add: &'static str,
}

/// The event's timeline entry and key, if the timeline has room.
fn with_entry(request: UpdateRequest, event: &StatusEvent) -> (UpdateRequest, Addition) {
    let request = with_room(request, event)
        .expression_attribute_values(":empty", AttributeValue::L(vec![]))
        .expression_attribute_values(":entry", timeline_entry(event, true))
        .expression_attribute_values(
            ":keyset",
            AttributeValue::Ss(vec![event.idempotency_key.clone()]),
        );
    let addition = Addition {
        condition: format!("{IS_NEWER} AND {HAS_ROOM}"),
        set: Some("#tl = list_append(if_not_exists(#tl, :empty), :entry)"),
        add: "ADD #keys :keyset, #tlb :size",
    };
    (request, addition)
}

/// No entry (the timeline is full): counted as overflow instead.
fn with_overflow(request: UpdateRequest) -> (UpdateRequest, Addition) {
    let request = request
        .expression_attribute_names("#overflow", "timeline_overflow")
        .expression_attribute_values(":one", n(1));
    let addition = Addition {
        condition: IS_NEWER.to_owned(),
        set: None,
        add: "ADD #overflow :one",
    };
    (request, addition)
}

/// The call's details this callback carries, as `SET` clauses.
fn with_details(mut request: UpdateRequest, event: &StatusEvent) -> (UpdateRequest, Vec<String>) {
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
    let mut set = Vec::new();
    for (alias, name, placeholder, value) in details {
        if let Some(value) = value {
            request = request
                .expression_attribute_names(alias, name)
                .expression_attribute_values(placeholder, value);
            set.push(format!("{alias} = {placeholder}"));
        }
    }
    (request, set)
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
    ) -> Result<Result<(), Option<Item>>, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(&event.call_sid)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let (request, mut set) = with_state(request, event);
        let (request, addition) = if listed {
            with_entry(request, event)
        } else {
            with_overflow(request)
        };
        set.extend(addition.set.map(str::to_owned));
        let (request, details) = with_details(request, event);
        set.extend(details);
        let expression = format!("SET {} {}", set.join(", "), addition.add);
        match request
            .condition_expression(addition.condition)
            .update_expression(expression)
            .send()
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
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
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
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

    pub(crate) async fn delete(&self, call_sid: &str, sort_key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(call_item_key(call_sid, sort_key)))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    pub(crate) async fn get_raw(
        &self,
        call_sid: &str,
        sort_key: &str,
    ) -> Result<Option<Item>, StoreError> {
        get_consistent(&self.client, &self.table, call_item_key(call_sid, sort_key)).await
    }
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

fn call_record(call_sid: &str, item: &Item) -> CallRecord {
    let text = |item: &Item, name: &str| item.text(name).map(str::to_owned);
    let sequence_number = |item: &Item| item.number::<i64>("seq").filter(|&s| s >= 0);
    let count = |name: &str| item.number::<i64>(name).map_or(0, |d| d.max(0) as u64);
    let timeline = match item.get("timeline") {
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .filter_map(|e| e.as_m().ok())
            .map(|e| {
                let idempotency_key = text(e, "key").unwrap_or_default();
                TimelineEntry {
                    status: text(e, "status").unwrap_or_default(),
                    sequence_number: sequence_number(e),
                    timestamp: text(e, "at"),
                    received_at: text(e, "received_at").unwrap_or_default(),
                    reconciled: crate::reconcile::is_reconciled(&idempotency_key),
                    idempotency_key,
                    applied: e.is_true("applied"),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut conferences = item.string_set("conferences").unwrap_or_default().to_vec();
    conferences.sort();
    CallRecord {
        call_sid: call_sid.to_owned(),
        flow: text(item, "flow"),
        status: text(item, "status"),
        sequence_number: sequence_number(item),
        duplicates: count("duplicates"),
        timeline,
        timeline_overflow: count("timeline_overflow"),
        conferences,
    }
}
