//! The worker's batch logic over the `CallStore` trait: partial failures, and each call's
//! events applied one at a time in arrival order while calls run concurrently.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shared::events::Envelope;
use shared::store::{CallStarted, CallStore, Outcome, StatusEvent, StoreError};
use shared::twilio::{CallStatus, Params, StatusCallback};
use shared::worker::{Disposition, QueuedMessage, decide_status_batch};

#[derive(Default)]
struct RecordingStore {
    applied: Mutex<Vec<(String, CallStatus)>>,
    started: Mutex<Vec<(String, String)>>,
    in_flight: Mutex<HashMap<String, u32>>,
    most_at_once: Mutex<u32>,
    failing_call: Option<String>,
}

impl CallStore for RecordingStore {
    async fn apply_status(&self, event: &StatusEvent) -> Result<Outcome, StoreError> {
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            let n = in_flight.entry(event.call_sid.clone()).or_default();
            *n += 1;
            assert_eq!(*n, 1, "two events of {} applied at once", event.call_sid);
            let total: u32 = in_flight.values().sum();
            let mut most = self.most_at_once.lock().unwrap();
            *most = (*most).max(total);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        *self
            .in_flight
            .lock()
            .unwrap()
            .get_mut(&event.call_sid)
            .unwrap() -= 1;
        if self.failing_call.as_deref() == Some(event.call_sid.as_str()) {
            return Err(StoreError("throttled".into()));
        }
        self.applied
            .lock()
            .unwrap()
            .push((event.call_sid.clone(), event.status));
        Ok(Outcome::Applied)
    }

    async fn record_started(&self, event: &CallStarted) -> Result<(), StoreError> {
        self.started
            .lock()
            .unwrap()
            .push((event.call_sid.clone(), event.flow.clone()));
        Ok(())
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
    store: &RecordingStore,
    messages: &[QueuedMessage<'_>],
) -> Vec<(String, String)> {
    decide_status_batch(store, messages)
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
    let store = RecordingStore::default();
    let failed = not_applied(&store, &messages).await;
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
}

#[tokio::test]
async fn a_store_failure_fails_only_that_calls_messages() {
    let bodies = [
        ("a", envelope("CA1", CallStatus::Ringing, 1)),
        ("b", envelope("CA9", CallStatus::Ringing, 1)),
        ("c", envelope("CA1", CallStatus::Completed, 3)),
    ];
    let messages = queued(&bodies);
    let store = RecordingStore {
        failing_call: Some("CA9".into()),
        ..Default::default()
    };
    let failed = not_applied(&store, &messages).await;
    assert_eq!(ids(&failed), ["b"]);
    assert_eq!(store.applied.lock().unwrap().len(), 2);
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
    let store = RecordingStore::default();
    assert_eq!(ids(&not_applied(&store, &queued(&bodies)).await), ["x"]);
    assert_eq!(
        *store.started.lock().unwrap(),
        [("CA7".to_owned(), "main-menu".to_owned())]
    );
    assert_eq!(store.applied.lock().unwrap().len(), 1);
}
