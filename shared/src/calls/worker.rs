//! The status worker: applies a batch of call events (statuses, starts, room events) to a
//! [`CallStore`].

use std::time::Instant;

use futures::future::join_all;

use super::{CallEvent, CallStore, Outcome};
use crate::events::Envelope;
use crate::metrics::{self, name};
use crate::worker::{BatchWorker, Budget, Disposition, FateNotes, Pace, QueuedMessage};

/// The status worker over a [`CallStore`].
///
/// Calls and conference rooms are applied concurrently; one call's (or room's) events one
/// after another, in arrival order, so a batch never races itself on an item (the store's conditional writes would keep
/// the state right, at the cost of wasted writes). Each event goes through the invocation's
/// [`Budget`]: one that no longer fits before the deadline is not started, and the rest of
/// its call's events with it (handed back, no receive spent). A message that is not a call
/// envelope is retried like any failure rather than dead-lettered at once: an envelope from
/// a newer webhook (a version this worker does not know yet) becomes readable once the
/// worker is deployed too. On the queue's last receive it goes to the DLQ with its reason.
pub struct StatusWorker<S> {
    store: S,
    pace: Pace,
}

impl<S: CallStore> StatusWorker<S> {
    pub fn new(store: S) -> Self {
        Self {
            store,
            pace: Pace::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Applies every event of the batch with no deadline; returns the messages that were
    /// not applied, each with what to do about it (the rest are done).
    pub async fn apply_batch<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
    ) -> Vec<(&'m QueuedMessage<'m>, Disposition)> {
        let unbounded = Instant::now() + std::time::Duration::from_secs(86_400);
        self.apply_within(messages, &Budget::new(unbounded, &self.pace))
            .await
    }

    /// [`Self::apply_batch`] within `budget`.
    pub async fn apply_within<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
        budget: &Budget<'_>,
    ) -> Vec<(&'m QueuedMessage<'m>, Disposition)> {
        let mut failed = Vec::new();
        let mut calls: Vec<(String, Vec<(&QueuedMessage<'_>, CallEvent)>)> = Vec::new();
        for message in messages {
            match decode(message.body) {
                Ok(event) => match calls.iter_mut().find(|(sid, _)| sid == event.subject()) {
                    Some((_, events)) => events.push((message, event)),
                    None => calls.push((event.subject().to_owned(), vec![(message, event)])),
                },
                Err(reason) => {
                    metrics::count(name::POISON_MESSAGES, 1);
                    tracing::error!(
                        outcome = "poison",
                        message_id = message.message_id,
                        reason,
                        "message cannot be applied; it will go to the DLQ"
                    );
                    failed.push((
                        message,
                        Disposition::retry(format!("not a call event: {reason}")),
                    ));
                }
            }
        }
        let per_call = join_all(calls.iter().map(|(_, events)| async move {
            let mut failed = Vec::new();
            for (message, event) in events {
                match budget.run(self.apply(message, event)).await {
                    Disposition::Done => {}
                    disposition => failed.push((*message, disposition)),
                }
            }
            failed
        }))
        .await;
        failed.extend(per_call.into_iter().flatten());
        failed
    }

    /// Applies one event, logged and counted.
    async fn apply(&self, message: &QueuedMessage<'_>, event: &CallEvent) -> Disposition {
        let started = Instant::now();
        let result = self.store.apply(event).await;
        let latency_us = started.elapsed().as_micros() as u64;
        match result {
            Ok(outcome) => {
                // A room's events are counted apart: they cost other writes.
                metrics::count(
                    match (event, outcome) {
                        (CallEvent::Conference(_), _) => name::CONFERENCE_EVENTS,
                        (_, Outcome::Applied) => name::EVENTS_APPLIED,
                        (_, Outcome::Duplicate) => name::EVENTS_DUPLICATE,
                        (_, Outcome::Late) => name::EVENTS_LATE,
                    },
                    1,
                );
                let call_status = match event {
                    CallEvent::Status(e) => Some(e.status.as_str()),
                    CallEvent::Conference(e) => Some(e.event.as_str()),
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
                );
                Disposition::Done
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
                Disposition::retry(e)
            }
        }
    }
}

impl<S: CallStore> FateNotes for StatusWorker<S> {}

impl<S: CallStore> BatchWorker for StatusWorker<S> {
    fn pace(&self) -> &Pace {
        &self.pace
    }

    /// [`StatusWorker::apply_within`] the invocation's budget.
    async fn decide<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
        budget: &Budget<'_>,
    ) -> Vec<(&'m QueuedMessage<'m>, Disposition)> {
        self.apply_within(messages, budget).await
    }
}

fn decode(body: &str) -> Result<CallEvent, String> {
    let envelope = Envelope::from_json(body).map_err(|e| e.to_string())?;
    CallEvent::from_envelope(&envelope).map_err(|e| e.to_string())
}
