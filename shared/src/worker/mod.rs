//! Working off a queue batch: each of the three workers decides what to do with each message
//! ([`BatchWorker`]), and the [`Settler`] carries it out, reporting each failure on its own so
//! one poison message never blocks or re-runs its neighbours (SQS partial batch responses).

mod settle;

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

pub use settle::{Fate, FateNotes, Settler};

use crate::metrics::{self, name};

/// One queue message: its id (the batch item identifier) and body.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueuedMessage<'a> {
    pub message_id: &'a str,
    pub body: &'a str,
    pub receipt_handle: &'a str,
    /// Deliveries so far, this one included (SQS's `ApproximateReceiveCount`).
    pub receive_count: u32,
    /// The redrive that put it back on the queue, if one did ([`crate::queue::dead_letter::REDRIVE_RUN`]).
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
pub(crate) fn cut_off() -> Disposition {
    metrics::count(name::CUT_OFF, 1);
    Disposition::Retry {
        reason: "the invocation's deadline came first".into(),
        after: Some(Duration::from_secs(1)),
    }
}

/// A queue's worker: what to do with each message of a batch, decided before `deadline`
/// (what is still undecided then is cut off and retried soon, so the batch settles before
/// Lambda's timeout instead of being killed mid-settle). It is told each message's fate
/// before the fate is carried out ([`FateNotes`]; most workers need not listen).
pub trait BatchWorker: FateNotes {
    fn decide<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
        deadline: Instant,
    ) -> impl Future<Output = Vec<(&'m QueuedMessage<'m>, Disposition)>> + Send;
}

/// One batch, start to end: `worker` decides, `settler` carries it out; returns the ids to
/// report failed (SQS partial batch response).
pub async fn work_off<W: BatchWorker>(
    worker: &W,
    settler: &Settler,
    messages: &[QueuedMessage<'_>],
    deadline: Instant,
) -> Vec<String> {
    let decided = worker.decide(messages, deadline).await;
    settler.settle_all_noting(&decided, worker).await
}

/// Runs each message's decision until `deadline`; one still running then is cut off:
/// retried soon, and counted as `MessagesCutOff`.
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
