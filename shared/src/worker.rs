//! Applying a batch of queued events, reporting each failure on its own so one poison
//! message never blocks or re-runs its neighbours (SQS partial batch responses).

use std::time::Instant;

use futures::future::join_all;

use crate::events::Envelope;
use crate::store::{CallStore, StatusEvent};

/// One queue message: its id (the batch item identifier) and body.
#[derive(Debug, Clone, Copy)]
pub struct QueuedMessage<'a> {
    pub message_id: &'a str,
    pub body: &'a str,
}

/// Applies every status event of a batch (concurrently: the store's conditional writes keep
/// order) and returns the ids of the messages to retry. A message that is not a status
/// envelope fails every time, so after the queue's maxReceiveCount it rests in the DLQ.
pub async fn apply_status_batch<S: CallStore>(
    store: &S,
    messages: &[QueuedMessage<'_>],
) -> Vec<String> {
    let results = join_all(messages.iter().map(|message| async move {
        let started = Instant::now();
        let result = apply_one(store, message.body).await;
        let latency_us = started.elapsed().as_micros() as u64;
        match result {
            Ok((call_sid, status, outcome)) => {
                tracing::info!(
                    call_sid,
                    kind = "call.status",
                    call_status = status,
                    outcome,
                    latency_us,
                    message_id = message.message_id,
                    "event processed"
                );
                None
            }
            Err(Failure::Poison(reason)) => {
                tracing::error!(
                    kind = "call.status",
                    outcome = "poison",
                    latency_us,
                    message_id = message.message_id,
                    reason,
                    "message cannot be applied; it will go to the DLQ"
                );
                Some(message.message_id.to_owned())
            }
            Err(Failure::Transient(reason)) => {
                tracing::warn!(
                    kind = "call.status",
                    outcome = "retry",
                    latency_us,
                    message_id = message.message_id,
                    reason,
                    "event not applied; it will be retried"
                );
                Some(message.message_id.to_owned())
            }
        }
    }))
    .await;
    results.into_iter().flatten().collect()
}

enum Failure {
    Poison(String),
    Transient(String),
}

async fn apply_one<S: CallStore>(
    store: &S,
    body: &str,
) -> Result<(String, &'static str, &'static str), Failure> {
    let envelope = Envelope::from_json(body).map_err(|e| Failure::Poison(e.to_string()))?;
    let event =
        StatusEvent::from_envelope(&envelope).map_err(|e| Failure::Poison(e.to_string()))?;
    let outcome = store
        .apply_status(&event)
        .await
        .map_err(|e| Failure::Transient(e.to_string()))?;
    Ok((event.call_sid, event.status.as_str(), outcome.as_str()))
}
