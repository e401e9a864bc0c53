//! The status worker's batch logic over the `CallStore` trait, on the in-memory store:
//! partial failures, and each call's events applied one at a time in arrival order while
//! calls run concurrently.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use voicehooks::calls::conference::ConferenceEvent;
use voicehooks::calls::worker::StatusWorker;
use voicehooks::calls::{
    CallStarted, CallStore, MemoryCallStore, Outcome, StatusEvent, StoreError,
};
use voicehooks::events::{Envelope, EventKind};
use voicehooks::twilio::{CallStatus, Params, StatusCallback};
use voicehooks::worker::{Disposition, QueuedMessage};

/// The in-memory store, watched: what the worker hands it and in which order, how many
/// subjects it works on at once; `failing_call`'s writes fail.
#[derive(Default)]
struct WatchedStore {
    store: MemoryCallStore,
    applied: Mutex<Vec<(String, CallStatus)>>,
    /// (room, event) in the order applied.
    rooms: Mutex<Vec<(String, String)>>,
    started: Mutex<Vec<(String, String)>>,
    in_flight: Mutex<HashMap<String, u32>>,
    most_at_once: Mutex<u32>,
    failing_call: Option<String>,
}

impl WatchedStore {
    /// Holds `subject` for a few ms, failing the test if another of its events is applied
    /// meanwhile.
    async fn one_at_a_time(&self, subject: &str) {
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            let n = in_flight.entry(subject.to_owned()).or_default();
            *n += 1;
            assert_eq!(*n, 1, "two events of {subject} applied at once");
            let total: u32 = in_flight.values().sum();
            let mut most = self.most_at_once.lock().unwrap();
            *most = (*most).max(total);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        *self.in_flight.lock().unwrap().get_mut(subject).unwrap() -= 1;
    }
}

impl CallStore for WatchedStore {
    async fn apply_conference(&self, event: &ConferenceEvent) -> Result<Outcome, StoreError> {
        self.one_at_a_time(&event.conference_sid).await;
        self.rooms
            .lock()
            .unwrap()
            .push((event.conference_sid.clone(), event.event.clone()));
        self.store.apply_conference(event).await
    }

    async fn apply_status(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        self.one_at_a_time(&event.call_sid).await;
        if self.failing_call.as_deref() == Some(event.call_sid.as_str()) {
            return Err(StoreError("throttled".into()));
        }
        self.applied
            .lock()
            .unwrap()
            .push((event.call_sid.clone(), event.status));
        self.store.apply_status(event).await
    }

    async fn record_started(&self, event: &CallStarted) -> Result<(), StoreError> {
        self.started
            .lock()
            .unwrap()
            .push((event.call_sid.clone(), event.flow.clone()));
        self.store.record_started(event).await
    }
}

fn envelope(call_sid: &str, status: CallStatus, seq: u32) -> String {
    let params: Params = [
        ("CallSid", call_sid.to_owned()),
        ("AccountSid", "AC1".to_owned()),
        ("CallStatus", status.as_str().to_owned()),
        ("SequenceNumber", seq.to_string()),
    ]
    .into_iter()
    .collect();
    Envelope::call_status(&StatusCallback::parse(&params).unwrap(), &params, None).to_json()
}

fn queued<'a>(bodies: &'a [(&'static str, String)]) -> Vec<QueuedMessage<'a>> {
    bodies
        .iter()
        .map(|(id, body)| QueuedMessage {
            message_id: id,
            body,
            ..QueuedMessage::default()
        })
        .collect()
}

/// The messages the batch did not apply, by id, each with why.
async fn not_applied(
    worker: &StatusWorker<WatchedStore>,
    messages: &[QueuedMessage<'_>],
) -> Vec<(String, String)> {
    worker
        .apply_batch(messages)
        .await
        .into_iter()
        .map(|(message, disposition)| match disposition {
            Disposition::Retry {
                reason,
                after: None,
            } => (message.message_id.to_owned(), reason),
            other => panic!("{}: {other:?}, expected a plain retry", message.message_id),
        })
        .collect()
}

fn ids(failed: &[(String, String)]) -> Vec<&str> {
    failed.iter().map(|(id, _)| id.as_str()).collect()
}

#[tokio::test]
async fn calls_run_concurrently_and_each_calls_events_in_arrival_order() {
    let bodies = [
        ("m1", envelope("CA1", CallStatus::Ringing, 1)),
        ("m2", envelope("CA2", CallStatus::Initiated, 0)),
        ("m3", envelope("CA1", CallStatus::Completed, 3)),
        ("m4", "not an envelope".to_owned()),
        ("m5", envelope("CA2", CallStatus::Busy, 2)),
        ("m6", envelope("CA1", CallStatus::Initiated, 0)),
    ];
    let messages = queued(&bodies);
    let worker = StatusWorker::new(WatchedStore::default());
    let store = worker.store();
    let failed = not_applied(&worker, &messages).await;
    assert_eq!(ids(&failed), ["m4"], "only the poison message fails");
    assert!(failed[0].1.starts_with("not a call event: "), "{failed:?}");
    let applied = store.applied.lock().unwrap().clone();
    let of = |sid: &str| {
        applied
            .iter()
            .filter(|(s, _)| s == sid)
            .map(|(_, st)| *st)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("CA1"),
        [
            CallStatus::Ringing,
            CallStatus::Completed,
            CallStatus::Initiated
        ]
    );
    assert_eq!(of("CA2"), [CallStatus::Initiated, CallStatus::Busy]);
    assert_eq!(
        *store.most_at_once.lock().unwrap(),
        2,
        "the two calls overlapped"
    );
    // What the store made of them: CA1's initiated came after its completed.
    let ca1 = store.store.get_call("CA1").unwrap();
    assert_eq!(ca1.status.as_deref(), Some("completed"));
    assert_eq!(ca1.late_events(), 1);
    assert_eq!(
        store.store.get_call("CA2").unwrap().status.as_deref(),
        Some("busy")
    );
}

#[tokio::test]
async fn a_store_failure_fails_only_that_calls_messages() {
    let bodies = [
        ("a", envelope("CA1", CallStatus::Ringing, 1)),
        ("b", envelope("CA9", CallStatus::Ringing, 1)),
        ("c", envelope("CA1", CallStatus::Completed, 3)),
    ];
    let messages = queued(&bodies);
    let worker = StatusWorker::new(WatchedStore {
        failing_call: Some("CA9".into()),
        ..Default::default()
    });
    let failed = not_applied(&worker, &messages).await;
    assert_eq!(ids(&failed), ["b"]);
    let store = worker.store();
    assert_eq!(store.applied.lock().unwrap().len(), 2);
    assert!(
        store.store.get_call("CA9").is_none(),
        "nothing of CA9 stored"
    );
}

#[tokio::test]
async fn call_started_events_are_applied_beside_statuses_and_need_a_flow() {
    let params: Params = [
        ("CallSid", "CA7"),
        ("AccountSid", "AC1"),
        ("To", "+14155550100"),
    ]
    .into_iter()
    .collect();
    let started = Envelope::call_started("CA7", "AC1", &params, "main-menu");
    let mut flowless = started.clone();
    flowless.flow = None;
    let bodies = [
        ("s", started.to_json()),
        ("r", envelope("CA7", CallStatus::Ringing, 1)),
        ("x", flowless.to_json()),
    ];
    let worker = StatusWorker::new(WatchedStore::default());
    let store = worker.store();
    assert_eq!(ids(&not_applied(&worker, &queued(&bodies)).await), ["x"]);
    assert_eq!(
        *store.started.lock().unwrap(),
        [("CA7".to_owned(), "main-menu".to_owned())]
    );
    assert_eq!(store.applied.lock().unwrap().len(), 1);
    let call = store.store.get_call("CA7").unwrap();
    assert_eq!(
        (call.flow.as_deref(), call.status.as_deref()),
        (Some("main-menu"), Some("ringing"))
    );
}

fn room_event(room: &str, call: &str, event: &str, seq: u32) -> String {
    let seq = seq.to_string();
    let params: Params = [
        ("ConferenceSid", room),
        ("AccountSid", "AC1"),
        ("CallSid", call),
        ("StatusCallbackEvent", event),
        ("SequenceNumber", seq.as_str()),
    ]
    .into_iter()
    .collect();
    Envelope::from_callback(EventKind::ConferenceStatus, &params, None)
        .unwrap()
        .to_json()
}

#[tokio::test]
async fn one_rooms_events_are_applied_one_at_a_time_whichever_calls_they_name() {
    let bodies = [
        ("j1", room_event("CF1", "CA1", "participant-join", 1)),
        ("j2", room_event("CF1", "CA2", "participant-join", 2)),
        ("s", envelope("CA1", CallStatus::InProgress, 2)),
        ("l1", room_event("CF1", "CA1", "participant-leave", 3)),
        ("k", room_event("CF2", "CA3", "participant-join", 1)),
    ];
    let worker = StatusWorker::new(WatchedStore::default());
    let store = worker.store();
    assert!(not_applied(&worker, &queued(&bodies)).await.is_empty());
    let rooms = store.rooms.lock().unwrap().clone();
    let of = |room: &str| {
        rooms
            .iter()
            .filter(|(r, _)| r == room)
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("CF1"),
        ["participant-join", "participant-join", "participant-leave"]
    );
    assert_eq!(of("CF2"), ["participant-join"]);
    assert_eq!(store.applied.lock().unwrap().len(), 1);
    assert_eq!(
        *store.most_at_once.lock().unwrap(),
        3,
        "rooms and calls overlapped"
    );
    let room = store.store.get_conference("CF1").unwrap();
    assert_eq!(room.participants.len(), 2);
    assert_eq!(
        store.store.get_call("CA1").unwrap().conferences,
        ["CF1"],
        "the participant's call names the room"
    );
}
