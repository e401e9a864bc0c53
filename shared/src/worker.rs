//! Applying a batch of queued events, reporting each failure on its own so one poison
//! message never blocks or re-runs its neighbours (SQS partial batch responses).

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;

use crate::config::WorkerQueue;
use crate::events::Envelope;
use crate::metrics::{self, name};
use crate::queue::dead_letter;
use crate::store::{CallEvent, CallStore, Outcome};

/// One queue message: its id (the batch item identifier) and body.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueuedMessage<'a> {
    pub message_id: &'a str,
    pub body: &'a str,
    pub receipt_handle: &'a str,
    /// Deliveries so far, this one included (SQS's `ApproximateReceiveCount`).
    pub receive_count: u32,
    /// The redrive that put it back on the queue, if one did ([`dead_letter::REDRIVE_RUN`]).
    pub redrive_run: Option<&'a str>,
}

/// What a worker decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled (or nothing to do): delete it.
    Done,
    /// Try again later: after `after`, or the backoff for its receive count.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// No retry can fix it (bad credentials, a refused URL, not an event): straight to the
    /// DLQ with the reason, for ops, instead of failing hot until maxReceiveCount.
    DeadLetter { reason: String },
    /// Done for this invocation, not finished (a long recording's archive that resumes
    /// where it stopped): sent again as a fresh message after `after`, and this one deleted,
    /// so the resumes of a four-hour recording never count as failed receives.
    Continue { reason: String, after: Duration },
}

impl Disposition {
    pub fn retry(reason: impl ToString) -> Self {
        Self::Retry {
            reason: reason.to_string(),
            after: None,
        }
    }
    pub fn dead_letter(reason: impl ToString) -> Self {
        Self::DeadLetter {
            reason: reason.to_string(),
        }
    }
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retry { .. } => "retry",
            Self::DeadLetter { .. } => "dead-letter",
            Self::Continue { .. } => "continue",
        }
    }

    /// The reason, when there is one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Done => None,
            Self::Retry { reason, .. }
            | Self::DeadLetter { reason }
            | Self::Continue { reason, .. } => Some(reason),
        }
    }
}

/// What a message still undecided at the deadline becomes: retried soon, its work cut off
/// so the batch settles before Lambda's timeout would kill it mid-settle.
fn cut_off() -> Disposition {
    metrics::count(name::CUT_OFF, 1);
    Disposition::Retry {
        reason: "the invocation's deadline came first".into(),
        after: Some(Duration::from_secs(1)),
    }
}

/// Decides every message of a batch at once with `decide`, until `deadline`, carries the
/// decisions out, and returns the ids to report failed (SQS partial batch response).
pub async fn settle_batch<'a, F, Fut>(
    settler: &Settler,
    messages: &'a [QueuedMessage<'a>],
    deadline: Instant,
    decide: F,
) -> Vec<String>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Disposition>,
{
    settle_batch_noting(settler, messages, deadline, decide, &()).await
}

/// [`settle_batch`], telling `notes` each message's fate before it is carried out.
pub async fn settle_batch_noting<'a, F, Fut>(
    settler: &Settler,
    messages: &'a [QueuedMessage<'a>],
    deadline: Instant,
    decide: F,
    notes: &impl FateNotes,
) -> Vec<String>
where
    F: Fn(&'a str) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let decide = &decide;
    let decided = decide_by(
        messages,
        deadline,
        messages
            .iter()
            .map(|message| async move { decide(message.body).await }),
    )
    .await;
    settler.settle_all_noting(&decided, notes).await
}

/// Runs each message's decision until `deadline`; one still running then is [`cut_off`].
pub async fn decide_by<'m, Fut>(
    messages: &'m [QueuedMessage<'m>],
    deadline: Instant,
    decisions: impl IntoIterator<Item = Fut>,
) -> Vec<(&'m QueuedMessage<'m>, Disposition)>
where
    Fut: Future<Output = Disposition>,
{
    let mut pending: FuturesUnordered<_> = decisions
        .into_iter()
        .enumerate()
        .map(|(i, decision)| async move { (i, decision.await) })
        .collect();
    let mut decided: Vec<Option<Disposition>> = messages.iter().map(|_| None).collect();
    let cutoff = tokio::time::sleep_until(deadline.into());
    tokio::pin!(cutoff);
    loop {
        tokio::select! {
            next = pending.next() => match next {
                Some((i, disposition)) => decided[i] = Some(disposition),
                None => break,
            },
            () = &mut cutoff => break,
        }
    }
    messages
        .iter()
        .zip(decided)
        .map(|(message, disposition)| (message, disposition.unwrap_or_else(cut_off)))
        .collect()
}

/// How long a retried message stays hidden: exponential in its receive count, with full
/// jitter so that a burst of failures does not come back at once; capped at 15 minutes.
pub fn retry_delay(base: Duration, receive_count: u32) -> Duration {
    let exponential = base.saturating_mul(1 << receive_count.saturating_sub(1).min(10));
    let capped = exponential.min(Duration::from_secs(900));
    // At least the base, so a retry is never hot.
    base + capped.saturating_sub(base).mul_f64(fastrand::f64())
}

/// What settling a message does, decided from its [`Disposition`] and its receive count.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Deleted.
    Done,
    /// Sent again as a fresh message after `after`, and deleted.
    SentOn { after: Duration },
    /// Back on the queue after `after`; this was receive `receive` of `max_receives`.
    Retry {
        reason: String,
        receive: u32,
        max_receives: u32,
        after: Duration,
    },
    /// To the DLQ with the reason; `kind` is [`dead_letter::PERMANENT`] or
    /// [`dead_letter::EXHAUSTED`].
    DeadLetter { kind: &'static str, reason: String },
}

/// Told each message's fate before the settler carries it out: the recording worker notes a
/// recording's trouble on its item, so `voicectl call` can say what is happening to it.
pub trait FateNotes: Sync {
    fn note(&self, message: &QueuedMessage<'_>, fate: &Fate) -> impl Future<Output = ()> + Send;
}

/// No notes.
impl FateNotes for () {
    async fn note(&self, _: &QueuedMessage<'_>, _: &Fate) {}
}

/// Carries out dispositions on SQS: a retry sets the message's visibility timeout (Lambda
/// returns it to the queue when the batch response lists it), a dead letter is sent to the
/// DLQ with its reason before the original is deleted (a crash between the two leaves a
/// copy in both, never none). A retry on the queue's last receive is a dead letter too:
/// SQS would move the message on the next receive without a word of why.
#[derive(Clone)]
pub struct Settler {
    sqs: aws_sdk_sqs::Client,
    queue: WorkerQueue,
    worker: &'static str,
}

impl Settler {
    pub fn new(sqs: aws_sdk_sqs::Client, queue: &WorkerQueue, worker: &'static str) -> Self {
        Self {
            sqs,
            queue: queue.clone(),
            worker,
        }
    }

    /// Settles every decided message, all at once; returns the ids to report failed.
    pub async fn settle_all(&self, decided: &[(&QueuedMessage<'_>, Disposition)]) -> Vec<String> {
        self.settle_all_noting(decided, &()).await
    }

    /// [`Self::settle_all`], telling `notes` each message's fate first.
    pub async fn settle_all_noting(
        &self,
        decided: &[(&QueuedMessage<'_>, Disposition)],
        notes: &impl FateNotes,
    ) -> Vec<String> {
        let settled = join_all(decided.iter().map(|(message, disposition)| async move {
            let fate = self.fate(message, disposition);
            notes.note(message, &fate).await;
            (message.message_id, self.carry_out(message, &fate).await)
        }))
        .await;
        metrics::flush();
        settled
            .into_iter()
            .filter(|(_, failed)| *failed)
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    /// What settling `disposition` does to `message`; the retry's jittered delay is drawn
    /// here, once, so what a worker notes is what happens.
    pub fn fate(&self, message: &QueuedMessage<'_>, disposition: &Disposition) -> Fate {
        match disposition {
            Disposition::Done => Fate::Done,
            Disposition::Retry { reason, .. }
                if message.receive_count >= self.queue.max_receives =>
            {
                Fate::DeadLetter {
                    kind: dead_letter::EXHAUSTED,
                    reason: format!("gave up after {} receives: {reason}", message.receive_count),
                }
            }
            Disposition::Retry { reason, after } => Fate::Retry {
                reason: reason.clone(),
                receive: message.receive_count,
                max_receives: self.queue.max_receives,
                after: after
                    .unwrap_or_else(|| retry_delay(self.queue.retry_base, message.receive_count)),
            },
            Disposition::DeadLetter { reason } => Fate::DeadLetter {
                kind: dead_letter::PERMANENT,
                reason: reason.clone(),
            },
            Disposition::Continue { after, .. } => Fate::SentOn { after: *after },
        }
    }

    /// Returns whether the message must be reported failed (left on the queue).
    pub async fn settle(&self, message: &QueuedMessage<'_>, disposition: &Disposition) -> bool {
        self.carry_out(message, &self.fate(message, disposition))
            .await
    }

    async fn carry_out(&self, message: &QueuedMessage<'_>, fate: &Fate) -> bool {
        match fate {
            Fate::Done => false,
            Fate::DeadLetter { kind, reason } => {
                if *kind == dead_letter::EXHAUSTED {
                    tracing::warn!(
                        message_id = message.message_id,
                        outcome = "dead-letter",
                        reason,
                        "the queue's last receive failed too"
                    );
                }
                self.dead_letter(message, reason, kind).await
            }
            Fate::Retry { after, .. } => {
                metrics::count(name::EVENTS_RETRIED, 1);
                let changed = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.queue.queue_url)
                    .receipt_handle(message.receipt_handle)
                    .visibility_timeout(after.as_secs().clamp(1, 43_200) as i32)
                    .send()
                    .await;
                if let Err(e) = changed {
                    tracing::warn!(
                        message_id = message.message_id,
                        error = crate::aws::error_summary(&e),
                        "could not delay the retry; the queue's visibility timeout applies"
                    );
                }
                true
            }
            Fate::SentOn { after } => self.send_again(message, *after).await,
        }
    }

    /// Sends the message's body to its queue again, as a fresh message after `after`;
    /// returns whether the original must stay (the send failed: it comes back instead).
    async fn send_again(&self, message: &QueuedMessage<'_>, after: Duration) -> bool {
        let sent = self
            .sqs
            .send_message()
            .queue_url(&self.queue.queue_url)
            .message_body(message.body)
            .delay_seconds(after.as_secs().min(900) as i32)
            .send()
            .await;
        match sent {
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(
                    message_id = message.message_id,
                    error = crate::aws::error_summary(&e),
                    "could not send the message on; it comes back after its visibility timeout"
                );
                true
            }
        }
    }

    /// Sends the message to the DLQ with why; returns whether it must stay on the queue
    /// (the send failed: SQS's own move then takes it after maxReceiveCount).
    async fn dead_letter(&self, message: &QueuedMessage<'_>, reason: &str, kind: &str) -> bool {
        metrics::count(name::DEAD_LETTERED, 1);
        let attribute = crate::queue::string_attribute;
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.queue.dead_letter_queue_url)
            .message_body(message.body)
            .message_attributes(
                dead_letter::FAILURE_REASON,
                attribute(&reason.chars().take(1000).collect::<String>()),
            )
            .message_attributes(dead_letter::FAILED_BY, attribute(self.worker))
            .message_attributes(dead_letter::FAILURE_KIND, attribute(kind));
        if let Some(run) = message.redrive_run {
            send = send.message_attributes(dead_letter::REDRIVE_RUN, attribute(run));
        }
        if let Ok(envelope) = Envelope::from_json(message.body) {
            send = send
                .message_attributes("kind", attribute(envelope.kind.as_str()))
                .message_attributes("call_sid", attribute(&envelope.call_sid));
        }
        match send.send().await {
            Ok(_) => false,
            Err(e) => {
                tracing::error!(
                    message_id = message.message_id,
                    error = crate::aws::error_summary(&e),
                    "could not dead-letter the message; it stays on the queue"
                );
                true
            }
        }
    }
}

/// Applies every event of a batch (call status, call started) and returns the messages
/// that were not applied, each with what to do about it ([`Settler::settle_all`] does it).
///
/// Calls and conference rooms are applied concurrently; one call's (or room's) events one
/// after another, in arrival order, so a batch never races itself on an item (the store's conditional writes would keep
/// the state right, at the cost of wasted writes). A message that is not a call envelope is
/// retried like any failure rather than dead-lettered at once: an envelope from a newer
/// webhook (a version this worker does not know yet) becomes readable once the worker is
/// deployed too. On the queue's last receive it goes to the DLQ with its reason.
/// [`decide_status_batch`] until `deadline`: a batch still running then is retried whole
/// (the events it applied come back as duplicates, which the store absorbs), so the worker
/// settles before Lambda's timeout instead of being killed mid-settle.
pub async fn decide_status_batch_by<'m, S: CallStore>(
    store: &S,
    messages: &'m [QueuedMessage<'m>],
    deadline: Instant,
) -> Vec<(&'m QueuedMessage<'m>, Disposition)> {
    match tokio::time::timeout_at(deadline.into(), decide_status_batch(store, messages)).await {
        Ok(decided) => decided,
        Err(_) => messages.iter().map(|m| (m, cut_off())).collect(),
    }
}

pub async fn decide_status_batch<'m, S: CallStore>(
    store: &S,
    messages: &'m [QueuedMessage<'m>],
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
            let started = Instant::now();
            let result = store.apply(event).await;
            let latency_us = started.elapsed().as_micros() as u64;
            match result {
                Ok(outcome) => {
                    metrics::count(
                        match outcome {
                            Outcome::Applied => name::EVENTS_APPLIED,
                            Outcome::Duplicate => name::EVENTS_DUPLICATE,
                            Outcome::Late => name::EVENTS_LATE,
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
                    failed.push((*message, Disposition::retry(e)));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &'static str) -> QueuedMessage<'static> {
        QueuedMessage {
            message_id: id,
            body: "{}",
            receipt_handle: "r",
            receive_count: 1,
            redrive_run: None,
        }
    }

    #[tokio::test]
    async fn what_the_deadline_finds_undecided_is_retried_soon_and_the_rest_kept() {
        let messages = [message("quick"), message("stuck"), message("slow")];
        let deadline = Instant::now() + Duration::from_millis(200);
        let decisions = [
            Duration::ZERO,
            Duration::from_secs(3600),
            Duration::from_secs(1),
        ]
        .into_iter()
        .map(|wait| async move {
            tokio::time::sleep(wait).await;
            Disposition::Done
        });
        // Not a timing assertion: without the cutoff the hour-long decision would hang the test.
        let decided = tokio::time::timeout(
            Duration::from_secs(60),
            decide_by(&messages, deadline, decisions),
        )
        .await
        .expect("the deadline cut the batch off");
        assert_eq!(decided[0].1, Disposition::Done);
        for (message, disposition) in &decided[1..] {
            assert!(
                matches!(disposition, Disposition::Retry { reason, after: Some(_) } if reason.contains("deadline")),
                "{}: {disposition:?}",
                message.message_id
            );
        }
    }

    #[test]
    fn a_retry_delay_never_overflows_and_stays_within_sqs_limits() {
        for receives in [0, 1, 5, 40, u32::MAX] {
            let delay = retry_delay(Duration::from_secs(15), receives);
            assert!(delay >= Duration::from_secs(15) && delay <= Duration::from_secs(915));
        }
    }
}
