//! The DynamoDB call store against the emulator, with the SDK's requests counted by an
//! interceptor: the in-order path must cost exactly one write.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use futures::future::join_all;
use voicehooks::aws::RequestCounter;
use voicehooks::calls::{CallStore, DynamoCallStore, Outcome};
use voicehooks::twilio::CallStatus::{self, *};
use voicehooks_tests::{Aws, FailOperation, aws, call_sid, status_event};

fn counted_store(aws: &Aws) -> (DynamoCallStore, RequestCounter) {
    let counter = RequestCounter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
        .interceptor(counter.clone())
        .build();
    (
        DynamoCallStore::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            &aws.resources.calls_table,
        ),
        counter,
    )
}

async fn apply(
    store: &DynamoCallStore,
    sid: &str,
    status: CallStatus,
    seq: Option<u32>,
) -> Outcome {
    store
        .apply_status(&status_event(sid, status, seq))
        .await
        .unwrap()
}

async fn stored_status(store: &DynamoCallStore, sid: &str) -> Option<String> {
    store
        .get_call(sid)
        .await
        .unwrap()
        .and_then(|record| record.status)
}

#[tokio::test(flavor = "multi_thread")]
async fn in_order_events_cost_exactly_one_write_each() {
    let aws = aws("call-store").await;
    let (store, counter) = counted_store(&aws);
    let sid = call_sid(1);
    for (seq, status) in [Initiated, Ringing, InProgress, Completed]
        .into_iter()
        .enumerate()
    {
        counter.reset();
        let outcome = store
            .apply_status(&status_event(&sid, status, Some(seq as u32)))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Applied);
        assert_eq!(
            counter.snapshot().into_iter().collect::<Vec<_>>(),
            vec![("DynamoDB.UpdateItem".to_owned(), 1)],
            "one request, a write"
        );
    }
    println!("DynamoDB requests per in-order status event: 1 (UpdateItem), measured over 4 events");
    let record = store.get_call(&sid).await.unwrap().unwrap();
    assert_eq!(record.status.as_deref(), Some("completed"));
    assert_eq!(record.sequence_number, Some(3));
    let statuses: Vec<&str> = record.timeline.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert!(record.timeline.iter().all(|e| e.applied));
    assert_eq!((record.duplicates, record.late_events()), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_changes_nothing_but_its_counter() {
    let aws = aws("call-store").await;
    let (store, counter) = counted_store(&aws);
    let event = status_event(&call_sid(2), Ringing, Some(1));
    assert_eq!(store.apply_status(&event).await.unwrap(), Outcome::Applied);
    let before = store.get_call(&event.call_sid).await.unwrap().unwrap();
    counter.reset();
    assert_eq!(
        store.apply_status(&event).await.unwrap(),
        Outcome::Duplicate
    );
    // The failed conditional write (whose old item tells it is a duplicate) and the counter.
    assert_eq!(counter.count("DynamoDB.UpdateItem"), 2);
    assert_eq!(
        counter.count("DynamoDB.GetItem"),
        0,
        "no read: the failed write returned the old item"
    );
    let after = store.get_call(&event.call_sid).await.unwrap().unwrap();
    assert_eq!(after.timeline, before.timeline);
    assert_eq!(after.status, before.status);
    assert_eq!(after.duplicates, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_event_is_recorded_not_applied_and_only_once() {
    let aws = aws("call-store").await;
    let (store, counter) = counted_store(&aws);
    let sid = call_sid(3);
    assert_eq!(
        apply(&store, &sid, Completed, Some(3)).await,
        Outcome::Applied
    );
    counter.reset();
    let late = status_event(&sid, Ringing, Some(1));
    assert_eq!(store.apply_status(&late).await.unwrap(), Outcome::Late);
    assert_eq!(
        counter.count("DynamoDB.UpdateItem"),
        2,
        "the refused write and the timeline entry"
    );
    assert_eq!(
        store.apply_status(&late).await.unwrap(),
        Outcome::Duplicate,
        "a redelivered late event"
    );
    let record = store.get_call(&sid).await.unwrap().unwrap();
    assert_eq!(record.status.as_deref(), Some("completed"));
    assert_eq!(record.late_events(), 1);
    assert_eq!(record.timeline.len(), 2);
    assert!(!record.timeline[1].applied && record.timeline[1].status == "ringing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_status_is_final() {
    let aws = aws("call-store").await;
    let (store, _) = counted_store(&aws);
    let sid = call_sid(4);
    assert_eq!(
        apply(&store, &sid, NoAnswer, Some(2)).await,
        Outcome::Applied
    );
    // Even a terminal status with a higher sequence number does not replace the first one.
    assert_eq!(apply(&store, &sid, Completed, Some(5)).await, Outcome::Late);
    assert_eq!(
        stored_status(&store, &sid).await.as_deref(),
        Some("no-answer")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_sequence_numbers_status_order_decides() {
    let aws = aws("call-store").await;
    let (store, _) = counted_store(&aws);
    let sid = call_sid(5);
    assert_eq!(apply(&store, &sid, Ringing, None).await, Outcome::Applied);
    assert_eq!(apply(&store, &sid, Queued, None).await, Outcome::Late);
    assert_eq!(apply(&store, &sid, Busy, None).await, Outcome::Applied);
    assert_eq!(stored_status(&store, &sid).await.as_deref(), Some("busy"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deliveries_of_one_event_apply_it_once() {
    let aws = aws("call-store").await;
    let (store, _) = counted_store(&aws);
    let event = status_event(&call_sid(6), Initiated, Some(0));
    let outcomes: Vec<Outcome> = join_all((0..8).map(|_| store.apply_status(&event)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Applied).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Duplicate)
            .count(),
        7,
        "{outcomes:?}"
    );
    let record = store.get_call(&event.call_sid).await.unwrap().unwrap();
    assert_eq!((record.timeline.len(), record.duplicates), (1, 7));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_applied_in_any_order_ends_in_its_true_state() {
    let aws = aws("call-store").await;
    let (store, _) = counted_store(&aws);
    let sid = call_sid(7);
    let events: Vec<_> = [
        (Initiated, 0),
        (Ringing, 1),
        (InProgress, 2),
        (Completed, 3),
    ]
    .into_iter()
    .map(|(s, seq): (CallStatus, u32)| status_event(&sid, s, Some(seq)))
    .collect();
    // All at once, twice over.
    let outcomes = join_all(
        events
            .iter()
            .chain(events.iter())
            .map(|e| store.apply_status(e)),
    )
    .await;
    assert!(outcomes.iter().all(Result::is_ok));
    let record = store.get_call(&sid).await.unwrap().unwrap();
    assert_eq!(record.status.as_deref(), Some("completed"));
    assert_eq!(
        record.timeline.len(),
        4,
        "each event once: {:?}",
        record.timeline
    );
    assert_eq!(record.duplicates, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_table_is_an_error_to_retry() {
    let aws = aws("call-store").await;
    let store = DynamoCallStore::new(aws_sdk_dynamodb::Client::new(&aws.sdk), "no-such-table");
    let error = store
        .apply_status(&status_event(&call_sid(8), Ringing, Some(1)))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("ResourceNotFoundException"),
        "{error}"
    );
}

fn room_event(
    room: &str,
    seq: u32,
    event: &str,
    call: Option<&str>,
) -> voicehooks::calls::conference::ConferenceEvent {
    let seq = seq.to_string();
    let mut pairs = vec![
        ("ConferenceSid", room),
        ("AccountSid", "AC1"),
        ("FriendlyName", "daily-standup"),
        ("StatusCallbackEvent", event),
        ("SequenceNumber", seq.as_str()),
    ];
    pairs.extend(call.map(|c| ("CallSid", c)));
    if event == "participant-leave" {
        pairs.push(("ReasonParticipantLeft", "participant_hung_up"));
    }
    if event == "conference-end" {
        pairs.push(("ReasonConferenceEnded", "last-participant-left"));
    }
    let params: voicehooks::twilio::Params = pairs.into_iter().collect();
    let envelope = voicehooks::events::Envelope::from_callback(
        voicehooks::events::EventKind::ConferenceStatus,
        &params,
        None,
    )
    .unwrap();
    voicehooks::calls::conference::ConferenceEvent::from_envelope(&envelope).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rooms_events_applied_at_once_in_any_order_leave_the_room_they_tell() {
    let aws = aws("call-store").await;
    let (store, _) = counted_store(&aws);
    let room = "CF00000000000000000000000000000001";
    let (a, b) = (call_sid(41), call_sid(42));
    let events = [
        room_event(room, 1, "participant-join", Some(&a)),
        room_event(room, 2, "participant-join", Some(&b)),
        room_event(room, 3, "conference-start", None),
        room_event(room, 4, "participant-mute", Some(&b)),
        room_event(room, 5, "participant-leave", Some(&a)),
        room_event(room, 6, "participant-leave", Some(&b)),
        room_event(room, 7, "conference-end", None),
    ];
    // Latest first, all at once, each twice: as many workers as events race on the room.
    let racing: Vec<_> = events.iter().rev().chain(events.iter()).collect();
    let outcomes = join_all(racing.iter().map(|e| store.apply_conference(e))).await;
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Duplicate)
            .count(),
        events.len(),
        "{outcomes:?}"
    );
    let stored = store.get_conference(room).await.unwrap().unwrap();
    assert_eq!(stored, voicehooks::calls::conference::fold(room, &events));
    assert_eq!(stored.status, "completed");
    assert!(stored.participant(&b).unwrap().muted);
    assert!(stored.participants.iter().all(|p| !p.in_room));
    // Each participant's call names the room, and a replay of the call keeps it.
    for call in [&a, &b] {
        let record = store.get_call(call).await.unwrap().unwrap();
        assert_eq!(record.conferences, [room]);
    }
    store
        .apply_status(&status_event(&a, Completed, Some(3)))
        .await
        .unwrap();
    store.replay_call(&a).await.unwrap().unwrap();
    assert_eq!(
        store.get_call(&a).await.unwrap().unwrap().conferences,
        [room]
    );
}

/// A join whose event was kept but whose link to the call failed (the call's `UpdateItem`
/// refused): its redelivery is a duplicate of the room's event, and still links the call.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_whose_link_failed_links_the_call_when_it_is_redelivered() {
    let aws = aws("call-store").await;
    let failing = DynamoCallStore::new(
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
                .interceptor(FailOperation::always("UpdateItem"))
                .build(),
        ),
        &aws.resources.calls_table,
    );
    let (store, _) = counted_store(&aws);
    let room = "CF00000000000000000000000000000002";
    let caller = call_sid(43);
    let join = room_event(room, 1, "participant-join", Some(&caller));
    failing
        .apply_conference(&join)
        .await
        .expect_err("the link's UpdateItem is refused, so the message is retried");
    assert_eq!(
        store.apply_conference(&join).await.unwrap(),
        Outcome::Duplicate,
        "the room kept the event the first time"
    );
    let record = store.get_call(&caller).await.unwrap().unwrap();
    assert_eq!(record.conferences, [room]);
}
