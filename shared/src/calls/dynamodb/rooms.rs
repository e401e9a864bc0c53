//! Conference rooms on DynamoDB: each event its own item (`pk = CONF#<ConferenceSid>`,
//! `sk = EVENT#<idempotency key>`), the room (`sk = STATE`) folded from all of them
//! ([`crate::calls::conference`] says why).

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoCallStore, call_key};
use crate::calls::conference::{ConferenceEvent, Room, fold};
use crate::calls::{Outcome, StoreError};
use crate::dynamodb::{
    Item, PARTITION_KEY, SORT_KEY, STATE_SK, get_consistent, n, s, store_error, table_key,
};
use crate::events::Envelope;
use crate::twilio::RoomEvent;

const EVENT_SK_PREFIX: &str = "EVENT#";

fn room_key(conference_sid: &str, sort_key: &str) -> Item {
    table_key(format!("CONF#{conference_sid}"), sort_key)
}

impl DynamoCallStore {
    /// Keeps a conference event once, rebuilds its room, and links the participant's call.
    pub async fn apply_conference(&self, event: &ConferenceEvent) -> Result<Outcome, StoreError> {
        let first = self.keep_event(event).await?;
        let events = self.room_events(&event.conference_sid).await?;
        let room = fold(&event.conference_sid, &events);
        self.write_room(&room).await?;
        // On every delivery, a duplicate's too: the first may have kept its event and then
        // failed to link (a refused write, the message retried), or kept it with its answer
        // lost (the SDK's retry then finds it kept). Adding the room to the call's set again
        // changes nothing.
        if let (Some(call_sid), RoomEvent::ParticipantJoin | RoomEvent::ParticipantLeave) =
            (&event.call_sid, event.room_event())
        {
            self.link_call(call_sid, &event.conference_sid).await?;
        }
        if !first {
            return Ok(Outcome::Duplicate);
        }
        // Folded in its place either way; `late` says a later one had come first.
        let newest = room.last_sequence_number;
        Ok(match (event.sequence_number, newest) {
            (Some(seq), Some(newest)) if seq < newest => Outcome::Late,
            _ => Outcome::Applied,
        })
    }

    /// The event's own item; `false` when it was already kept (a duplicate).
    async fn keep_event(&self, event: &ConferenceEvent) -> Result<bool, StoreError> {
        let mut item = room_key(
            &event.conference_sid,
            &format!("{EVENT_SK_PREFIX}{}", event.idempotency_key),
        );
        item.insert("envelope".to_owned(), s(&event.envelope));
        item.insert("received_at".to_owned(), s(&event.received_at));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(failed) if failed.is_conditional_check_failed_exception() => Ok(false),
                _ => Err(store_error(e)),
            },
        }
    }

    /// Every event kept for a room (a strongly consistent query, so this worker's own put
    /// is in it).
    async fn room_events(&self, conference_sid: &str) -> Result<Vec<ConferenceEvent>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :events)")
            .projection_expression("envelope")
            .expression_attribute_names("#pk", PARTITION_KEY)
            .expression_attribute_names("#sk", SORT_KEY)
            .expression_attribute_values(":pk", s(format!("CONF#{conference_sid}")))
            .expression_attribute_values(":events", s(EVENT_SK_PREFIX))
            .into_paginator()
            .items()
            .send();
        let mut events = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(store_error)?;
            let Some(AttributeValue::S(json)) = item.get("envelope") else {
                return Err(StoreError(format!(
                    "a stored event of conference {conference_sid} has no envelope"
                )));
            };
            let envelope = Envelope::from_json(json).map_err(|e| StoreError(e.to_string()))?;
            events.push(
                ConferenceEvent::from_envelope(&envelope).map_err(|e| StoreError(e.to_string()))?,
            );
        }
        Ok(events)
    }

    /// The room, unless the stored one was folded from as many events or more.
    async fn write_room(&self, room: &Room) -> Result<(), StoreError> {
        let mut item = room_key(&room.conference_sid, STATE_SK);
        item.insert("conference_sid".to_owned(), s(&room.conference_sid));
        item.insert("status".to_owned(), s(&room.status));
        item.insert("events".to_owned(), n(room.events));
        if let Some(name) = &room.friendly_name {
            item.insert("friendly_name".to_owned(), s(name));
        }
        let json = serde_json::to_string(room).expect("a room always serialises");
        item.insert("room".to_owned(), s(json));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#events) OR #events < :events")
            .expression_attribute_names("#events", "events")
            .expression_attribute_values(":events", n(room.events))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                // Another worker wrote the room from at least as many events.
                Some(failed) if failed.is_conditional_check_failed_exception() => Ok(()),
                _ => Err(store_error(e)),
            },
        }
    }

    /// Notes on the call's item that it was in the room.
    async fn link_call(&self, call_sid: &str, conference_sid: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(call_key(call_sid)))
            .update_expression("ADD #rooms :room")
            .expression_attribute_names("#rooms", "conferences")
            .expression_attribute_values(":room", AttributeValue::Ss(vec![conference_sid.into()]))
            .send()
            .await
            .map_err(store_error)?;
        crate::metrics::count(crate::metrics::name::CONFERENCE_LINKS, 1);
        Ok(())
    }

    /// A room as last folded; `None` when no event of it was applied.
    pub async fn get_conference(&self, conference_sid: &str) -> Result<Option<Room>, StoreError> {
        let item = get_consistent(
            &self.client,
            &self.table,
            room_key(conference_sid, STATE_SK),
        )
        .await?;
        match item.as_ref().and_then(|item| item.get("room")) {
            None => Ok(None),
            Some(AttributeValue::S(json)) => serde_json::from_str(json)
                .map(Some)
                .map_err(|e| StoreError(format!("conference {conference_sid}: {e}"))),
            Some(_) => Err(StoreError(format!(
                "conference {conference_sid}: its room is not a string"
            ))),
        }
    }
}
