//! Applying a batch of queued events, reporting each failure on its own so one poison
//! message never blocks or re-runs its neighbours (SQS partial batch responses).

use std::time::Instant;

use futures::future::join_all;

use crate::events::Envelope;
use crate::store::{CallEvent, CallStore};

/// One queue message: its id (the batch item identifier) and body.
#[derive(Debug, Clone, Copy)]
pub struct QueuedMessage<'a> {
    pub message_id: &'a str,
    pub body: &'a str,
}

/// Applies every event of a batch (call status, call started) and returns the ids of the
/// messages to retry.
///
/// Calls are applied concurrently; one call's events one after another, in arrival order, so
/// a batch never races itself on a call's item (the store's conditional writes would keep
/// the state right, at the cost of wasted writes). A message that is not a call envelope
/// fails every time, so after the queue's maxReceiveCount it rests in the DLQ.
pub async fn apply_status_batch<S: CallStore>(
    store: &S,
    messages: &[QueuedMessage<'_>],
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut calls: Vec<(String, Vec<(&QueuedMessage<'_>, CallEvent)>)> = Vec::new();
    for message in messages {
        match decode(message.body) {
            Ok(event) => match calls.iter_mut().find(|(sid, _)| sid == event.call_sid()) {
                Some((_, events)) => events.push((message, event)),
                None => calls.push((event.call_sid().to_owned(), vec![(message, event)])),
            },
            Err(reason) => {
                tracing::error!(
                    outcome = "poison",
                    message_id = message.message_id,
                    reason,
                    "message cannot be applied; it will go to the DLQ"
                );
                failed.push(message.message_id.to_owned());
            }
        }
    }
    let per_call = join_all(calls.iter().map(|(_, events)| async move {
        let mut failed = Vec::new();
        for (message, event) in events {
            let started = Instant::now();
            let result = store.apply(event).await;
            let latency_us = started.elapsed().as_micros() as u64;
            match result {
                Ok(outcome) => {
                    let call_status = match event {
                        CallEvent::Status(e) => Some(e.status.as_str()),
                        CallEvent::Started(_) => None,
                    };
                    tracing::info!(
                        call_sid = event.call_sid(),
                        kind = event.kind().as_str(),
                        call_status,
                        outcome = outcome.as_str(),
                        latency_us,
                        message_id = message.message_id,
                        "event processed"
                    )
                }
                Err(e) => {
                    tracing::warn!(
                        call_sid = event.call_sid(),
                        kind = event.kind().as_str(),
                        outcome = "retry",
                        latency_us,
                        message_id = message.message_id,
                        reason = %e,
                        "event not applied; it will be retried"
                    );
                    failed.push(message.message_id.to_owned());
                }
            }
        }
        failed
    }))
    .await;
    failed.extend(per_call.into_iter().flatten());
    failed
}

fn decode(body: &str) -> Result<CallEvent, String> {
    let envelope = Envelope::from_json(body).map_err(|e| e.to_string())?;
    CallEvent::from_envelope(&envelope).map_err(|e| e.to_string())
}
