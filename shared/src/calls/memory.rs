//! [`CallStore`] in memory, by the same rules as the DynamoDB store ([`crate::calls`]): for
//! tests of the logic around a store, such as the status worker's batches, without an
//! emulator. `tests/call_store.rs` holds the DynamoDB store to the same outcomes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use super::conference::{ConferenceEvent, Room, fold};
use super::{
    CallRecord, CallStarted, CallStore, MAX_TIMELINE_BYTES, MAX_TIMELINE_ENTRIES, Outcome,
    StatusEvent, StoreError, TimelineEntry, entry_size, moves_forward,
};
use crate::twilio::RoomEvent;

/// Calls and rooms held in memory.
#[derive(Debug, Default)]
pub struct MemoryCallStore {
    calls: Mutex<HashMap<String, StoredCall>>,
    /// Each room's events, each kept once (by idempotency key).
    rooms: Mutex<HashMap<String, Vec<ConferenceEvent>>>,
}

#[derive(Debug, Default)]
struct StoredCall {
    flow: Option<String>,
    /// (status rank, sequence number) of the state, once a status was applied.
    state: Option<(i64, i64)>,
    status: Option<String>,
    keys: HashSet<String>,
    timeline: Vec<TimelineEntry>,
    timeline_bytes: usize,
    duplicates: u64,
    timeline_overflow: u64,
    conferences: BTreeSet<String>,
}

impl StoredCall {
    fn has_room(&self, event: &StatusEvent) -> bool {
        self.timeline.len() < MAX_TIMELINE_ENTRIES
            && self.timeline_bytes <= MAX_TIMELINE_BYTES.saturating_sub(entry_size(event))
    }

    fn list(&mut self, event: &StatusEvent, applied: bool) {
        self.keys.insert(event.idempotency_key.clone());
        self.timeline_bytes += entry_size(event);
        self.timeline.push(TimelineEntry {
            status: event.status.as_str().to_owned(),
            sequence_number: event.sequence_number.map(i64::from),
            timestamp: event.timestamp.clone(),
            received_at: event.received_at.clone(),
            idempotency_key: event.idempotency_key.clone(),
            applied,
            reconciled: crate::reconcile::is_reconciled(&event.idempotency_key),
        });
    }
}

impl MemoryCallStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A call's state and timeline, as [`super::DynamoCallStore::get_call`] reads it.
    pub fn get_call(&self, call_sid: &str) -> Option<CallRecord> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(call_sid).map(|call| CallRecord {
            call_sid: call_sid.to_owned(),
            flow: call.flow.clone(),
            status: call.status.clone(),
            sequence_number: call.state.map(|(_, seq)| seq).filter(|&s| s >= 0),
            duplicates: call.duplicates,
            timeline: call.timeline.clone(),
            timeline_overflow: call.timeline_overflow,
            conferences: call.conferences.iter().cloned().collect(),
        })
    }

    /// A room as folded from every event kept for it.
    pub fn get_conference(&self, conference_sid: &str) -> Option<Room> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms
            .get(conference_sid)
            .map(|events| fold(conference_sid, events))
    }

    fn with_call<T>(&self, call_sid: &str, change: impl FnOnce(&mut StoredCall) -> T) -> T {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        change(calls.entry(call_sid.to_owned()).or_default())
    }
}

impl CallStore for MemoryCallStore {
    async fn apply_status(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        Ok(self.with_call(&event.call_sid, |call| {
            if call.keys.contains(&event.idempotency_key) {
                call.duplicates += 1;
                return Outcome::Duplicate;
            }
            let stored = call.state.map(|(rank, seq)| (rank, Some(seq)));
            let forward = moves_forward(stored, event);
            match (forward, call.has_room(event)) {
                (true, listed) => {
                    call.state = Some((i64::from(event.status.rank()), event.seq()));
                    call.status = Some(event.status.as_str().to_owned());
                    if listed {
                        call.list(event, true);
                    } else {
                        call.timeline_overflow += 1;
                    }
                    Outcome::Applied
                }
                (false, true) => {
                    call.list(event, false);
                    Outcome::Late
                }
                (false, false) => {
                    call.timeline_overflow += 1;
                    Outcome::Late
                }
            }
        }))
    }

    async fn record_started(&self, event: &CallStarted) -> Result<(), StoreError> {
        self.with_call(&event.call_sid, |call| {
            // First write wins: a redelivered or re-entered call keeps its first flow.
            call.flow.get_or_insert_with(|| event.flow.clone());
        });
        Ok(())
    }

    async fn apply_conference(&self, event: &ConferenceEvent) -> Result<Outcome, StoreError> {
        let (first, room) = {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            let events = rooms.entry(event.conference_sid.clone()).or_default();
            let first = !events
                .iter()
                .any(|kept| kept.idempotency_key == event.idempotency_key);
            if first {
                events.push(event.clone());
            }
            (first, fold(&event.conference_sid, events))
        };
        // On every delivery, as the DynamoDB store does (a first one may have failed to link).
        if let (Some(call_sid), RoomEvent::ParticipantJoin | RoomEvent::ParticipantLeave) =
            (&event.call_sid, event.room_event())
        {
            self.with_call(call_sid, |call| {
                call.conferences.insert(event.conference_sid.clone())
            });
        }
        if !first {
            return Ok(Outcome::Duplicate);
        }
        Ok(match (event.sequence_number, room.last_sequence_number) {
            (Some(seq), Some(newest)) if seq < newest => Outcome::Late,
            _ => Outcome::Applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::CallStatus;

    fn status(call: &str, status: CallStatus, seq: u32, key: &str) -> StatusEvent {
        StatusEvent {
            call_sid: call.into(),
            account_sid: "AC1".into(),
            status,
            sequence_number: Some(seq),
            timestamp: None,
            received_at: "2026-12-05T10:00:00Z".into(),
            idempotency_key: key.into(),
            from: None,
            to: None,
            direction: None,
            duration_secs: None,
            parent_call_sid: None,
            envelope: "{}".into(),
        }
    }

    #[tokio::test]
    async fn applies_once_and_never_backwards() {
        let store = MemoryCallStore::new();
        let ringing = status("CA1", CallStatus::Ringing, 1, "k1");
        let completed = status("CA1", CallStatus::Completed, 3, "k3");
        let late = status("CA1", CallStatus::InProgress, 2, "k2");
        assert_eq!(
            store.apply_status(&ringing).await.unwrap(),
            Outcome::Applied
        );
        assert_eq!(
            store.apply_status(&ringing).await.unwrap(),
            Outcome::Duplicate
        );
        assert_eq!(
            store.apply_status(&completed).await.unwrap(),
            Outcome::Applied
        );
        assert_eq!(store.apply_status(&late).await.unwrap(), Outcome::Late);
        // A terminal status is final, even against a higher sequence number.
        let busy = status("CA1", CallStatus::Busy, 9, "k9");
        assert_eq!(store.apply_status(&busy).await.unwrap(), Outcome::Late);

        let call = store.get_call("CA1").unwrap();
        assert_eq!(call.status.as_deref(), Some("completed"));
        assert_eq!(call.sequence_number, Some(3));
        assert_eq!(call.duplicates, 1);
        assert_eq!(call.late_events(), 2);
        assert_eq!(call.timeline.len(), 4);
    }

    #[tokio::test]
    async fn a_full_timeline_still_applies_in_order_events() {
        let store = MemoryCallStore::new();
        for seq in 0..MAX_TIMELINE_ENTRIES as u32 {
            let event = status("CA2", CallStatus::Ringing, seq, &format!("r{seq}"));
            store.apply_status(&event).await.unwrap();
        }
        let flood = status("CA2", CallStatus::Ringing, 0, "flood");
        assert_eq!(store.apply_status(&flood).await.unwrap(), Outcome::Late);
        let completed = status("CA2", CallStatus::Completed, 999, "done");
        assert_eq!(
            store.apply_status(&completed).await.unwrap(),
            Outcome::Applied
        );

        let call = store.get_call("CA2").unwrap();
        assert_eq!(call.status.as_deref(), Some("completed"));
        assert_eq!(call.timeline.len(), MAX_TIMELINE_ENTRIES);
        assert_eq!(call.timeline_overflow, 2);
    }

    #[tokio::test]
    async fn the_first_flow_wins() {
        let store = MemoryCallStore::new();
        for flow in ["main-menu", "sales"] {
            let started = CallStarted {
                call_sid: "CA3".into(),
                account_sid: "AC1".into(),
                flow: flow.into(),
                received_at: "2026-12-05T10:00:00Z".into(),
                from: None,
                to: None,
                direction: None,
                envelope: "{}".into(),
            };
            store.record_started(&started).await.unwrap();
        }
        assert_eq!(
            store.get_call("CA3").unwrap().flow.as_deref(),
            Some("main-menu")
        );
    }
}
