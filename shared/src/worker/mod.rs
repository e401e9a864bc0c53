//! Working off a queue batch: each of the three workers decides what to do with each message
//! ([`BatchWorker`]), within the invocation's [`Budget`], and the [`Settler`] carries it out,
//! reporting each failure on its own so one poison message never blocks or re-runs its
//! neighbours (SQS partial batch responses).
//!
//! A message counts toward the queue's `maxReceiveCount` only when its processing was tried
//! and failed. One the deadline came before was ever started is [`Disposition::NotStarted`]:
//! handed back as a fresh message (its first-enqueue time and attributes kept) and the
//! original deleted, so a slow table or a long batch never walks a healthy event into the
//! DLQ. The budget starts a message only when the worker's measured time per message
//! ([`Pace`]) still fits before the deadline, which sizes each batch to its invocation.

mod settle;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;

pub use settle::{Fate, FateNotes, MAX_HAND_BACKS, Settler};

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
    /// When the event was first enqueued, in ms since the epoch: what a hand-back carried
    /// ([`crate::queue::resent::FIRST_SENT_AT`]), else SQS's `SentTimestamp`.
    pub first_sent_ms: Option<u64>,
    /// Times it was handed back unstarted so far ([`crate::queue::resent::HANDED_BACK`]).
    pub handed_back: u32,
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
    /// Never started: the deadline came first. Handed back as a fresh message and this one
    /// deleted, so it does not spend a receive (up to [`MAX_HAND_BACKS`] times).
    NotStarted,
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
            Self::NotStarted => "not-started",
        }
    }

    /// The reason, when there is one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Done => None,
            Self::NotStarted => Some(NOT_STARTED),
            Self::Retry { reason, .. }
            | Self::DeadLetter { reason }
            | Self::Continue { reason, .. } => Some(reason),
        }
    }
}

const NOT_STARTED: &str = "not started before the invocation's deadline";

/// What a message still running at the deadline becomes: its work cut off so the batch
/// settles before Lambda's timeout would kill it mid-settle, and retried after the backoff
/// for its receive count. It was tried, so the receive counts: a message that always
/// outlasts its invocation reaches the DLQ.
pub(crate) fn cut_off() -> Disposition {
    metrics::count(name::CUT_OFF, 1);
    Disposition::retry("the invocation's deadline came first")
}

/// How long one message takes this worker, as measured over its recent messages: a smoothed
/// mean plus four smoothed mean deviations, the estimator TCP sizes its retransmission timer
/// with (RFC 6298, section 2: gains 1/8 and 1/4), so one slow write raises it at once and a
/// run of quick ones brings it back down. Zero until the first message is measured. Per
/// worker instance: a Lambda instance serves one batch at a time.
#[derive(Debug, Default)]
pub struct Pace {
    /// (smoothed time, smoothed deviation), in seconds.
    smoothed: Mutex<Option<(f64, f64)>>,
}

impl Pace {
    /// Adds one message's measured time.
    pub fn record(&self, took: Duration) {
        let took = took.as_secs_f64();
        let mut smoothed = self
            .smoothed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *smoothed = Some(match *smoothed {
            None => (took, took / 2.0),
            Some((mean, deviation)) => (
                mean + (took - mean) / 8.0,
                deviation + ((mean - took).abs() - deviation) / 4.0,
            ),
        });
    }

    /// How long the next message is expected to take, at most.
    pub fn expected(&self) -> Duration {
        let smoothed = *self
            .smoothed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        smoothed.map_or(Duration::ZERO, |(mean, deviation)| {
            Duration::try_from_secs_f64(mean + 4.0 * deviation).unwrap_or(Duration::MAX)
        })
    }
}

/// One invocation's time for its batch: the deadline, and the worker's [`Pace`]. Every
/// message's decision runs through [`Budget::run`].
pub struct Budget<'p> {
    deadline: Instant,
    pace: &'p Pace,
    /// Whether a message of this batch has started: the first always may, so every batch
    /// makes progress whatever the estimate says.
    started: AtomicBool,
}

impl<'p> Budget<'p> {
    pub fn new(deadline: Instant, pace: &'p Pace) -> Self {
        Self {
            deadline,
            pace,
            started: AtomicBool::new(false),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Runs one message's decision when it is expected to finish before the deadline (or it
    /// is the batch's first), and times it into the pace. One the deadline finds running is
    /// cut off (tried, so retried and counted); one that could not start is
    /// [`Disposition::NotStarted`].
    pub async fn run(&self, decision: impl Future<Output = Disposition>) -> Disposition {
        let first = !self.started.swap(true, Ordering::SeqCst);
        let started = Instant::now();
        let fits = started + self.pace.expected() <= self.deadline;
        if started >= self.deadline || !(first || fits) {
            return Disposition::NotStarted;
        }
        match tokio::time::timeout_at(self.deadline.into(), decision).await {
            Ok(disposition) => {
                // A paused archive used its invocation on purpose: not a message's time.
                if !matches!(disposition, Disposition::Continue { .. }) {
                    self.pace.record(started.elapsed());
                }
                disposition
            }
            Err(_) => {
                // At least this long: what the next batch's estimate must allow for.
                self.pace.record(started.elapsed());
                cut_off()
            }
        }
    }
}

/// A queue's worker: what to do with each message of a batch, each decision run through
/// the invocation's [`Budget`] so the batch settles before Lambda's timeout instead of being
/// killed mid-settle. It is told each message's fate before the fate is carried out
/// ([`FateNotes`]; most workers need not listen). Messages it leaves out are done.
pub trait BatchWorker: FateNotes {
    /// The worker's measured time per message (one per instance, kept across batches).
    fn pace(&self) -> &Pace;

    fn decide<'m>(
        &self,
        messages: &'m [QueuedMessage<'m>],
        budget: &Budget<'_>,
    ) -> impl Future<Output = Vec<(&'m QueuedMessage<'m>, Disposition)>> + Send;
}

/// One batch, start to end: `worker` decides before `deadline`, `settler` carries it out;
/// returns the ids to report failed (SQS partial batch response).
pub async fn work_off<W: BatchWorker>(
    worker: &W,
    settler: &Settler,
    messages: &[QueuedMessage<'_>],
    deadline: Instant,
) -> Vec<String> {
    let budget = Budget::new(deadline, worker.pace());
    let decided = worker.decide(messages, &budget).await;
    settler.settle_all_noting(&decided, worker).await
}

/// Runs each message's decision through `budget`, all at once.
pub async fn decide_by<'m, Fut>(
    messages: &'m [QueuedMessage<'m>],
    budget: &Budget<'_>,
    decisions: impl IntoIterator<Item = Fut>,
) -> Vec<(&'m QueuedMessage<'m>, Disposition)>
where
    Fut: Future<Output = Disposition>,
{
    let decided = join_all(decisions.into_iter().map(|d| budget.run(d))).await;
    messages.iter().zip(decided).collect()
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
            ..QueuedMessage::default()
        }
    }

    #[tokio::test]
    async fn what_the_deadline_finds_running_is_retried_and_the_rest_kept() {
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
        let pace = Pace::default();
        let budget = Budget::new(deadline, &pace);
        let decided = tokio::time::timeout(
            Duration::from_secs(60),
            decide_by(&messages, &budget, decisions),
        )
        .await
        .expect("the deadline cut the batch off");
        assert_eq!(decided[0].1, Disposition::Done);
        for (message, disposition) in &decided[1..] {
            assert!(
                matches!(disposition, Disposition::Retry { reason, .. } if reason.contains("deadline")),
                "{}: {disposition:?}",
                message.message_id
            );
        }
    }

    #[tokio::test]
    async fn a_message_whose_measured_time_does_not_fit_is_not_started_but_the_first_always_is() {
        let pace = Pace::default();
        pace.record(Duration::from_secs(30));
        let budget = Budget::new(Instant::now() + Duration::from_secs(10), &pace);
        let ran = std::sync::atomic::AtomicU32::new(0);
        let decision = || async {
            ran.fetch_add(1, Ordering::SeqCst);
            Disposition::Done
        };
        assert_eq!(budget.run(decision()).await, Disposition::Done);
        assert_eq!(budget.run(decision()).await, Disposition::NotStarted);
        assert_eq!(ran.load(Ordering::SeqCst), 1, "the second never ran");
        let passed = Budget::new(Instant::now(), &pace);
        assert_eq!(passed.run(decision()).await, Disposition::NotStarted);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            1,
            "nothing starts past the deadline"
        );
    }

    #[test]
    fn the_pace_rises_at_once_with_a_slow_message_and_falls_with_quick_ones() {
        let pace = Pace::default();
        assert_eq!(pace.expected(), Duration::ZERO, "nothing measured yet");
        for _ in 0..20 {
            pace.record(Duration::from_millis(10));
        }
        let quick = pace.expected();
        assert!(quick < Duration::from_millis(20), "{quick:?}");
        pace.record(Duration::from_secs(2));
        let after_slow = pace.expected();
        assert!(after_slow > Duration::from_secs(1), "{after_slow:?}");
        for _ in 0..40 {
            pace.record(Duration::from_millis(10));
        }
        assert!(
            pace.expected() < Duration::from_millis(100),
            "{:?}",
            pace.expected()
        );
    }

    #[test]
    fn a_retry_delay_never_overflows_and_stays_within_sqs_limits() {
        for receives in [0, 1, 5, 40, u32::MAX] {
            let delay = retry_delay(Duration::from_secs(15), receives);
            assert!(delay >= Duration::from_secs(15) && delay <= Duration::from_secs(915));
        }
    }
}
