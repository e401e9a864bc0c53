//! The operator's replay: a call rebuilt from the envelopes its timeline kept, through the
//! store's own code, as a first-time run would leave it (`voicectl replay calls`).

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

use super::dynamodb::call_key;
use super::{CallEvent, CallStore, DynamoCallStore, Outcome, StoreError};
use crate::dynamodb::{Item, PARTITION_KEY, SORT_KEY, STATE_SK, s, store_error};
use crate::events::Envelope;

/// A call's state as it was before a replay began, kept until the replay finishes so that
/// a replay cut short resumes from it instead of from a half-rebuilt state.
const REPLAY_BACKUP_SK: &str = "STATE#REPLAY-BACKUP";

impl DynamoCallStore {
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
fn stored_events(item: &Item) -> Result<Vec<CallEvent>, StoreError> {
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
