//! Dead-letter queues: how many, how old, what they hold, and moving them back.
//!
//! Reading a DLQ means receiving its messages, which hides each for a while. Every reader
//! here holds what it received for `hold` (so one sweep sees each message once) and makes
//! what it did not move visible again before it returns; a crash releases them after `hold`.
//!
//! A move sends to the source queue first and deletes from the DLQ only once SQS has
//! accepted the send: a crash between the two leaves a copy in both queues, which the
//! idempotent workers absorb, never a message in neither. (SQS's own message-move task
//! does the same without filters; moto lacks it, and the filters are the point here.)

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use indicatif::ProgressBar;
use serde::Serialize;
use voicehooks::events::Envelope;
use voicehooks::queue::dead_letter;
use voicehooks::stack_names::WorkQueue;
use voicehooks::transcribe::JobStateChange;

use crate::connect::{Queues, Stack};

/// The kind a Transcribe state change goes by (it is EventBridge's event, not an envelope).
pub const TRANSCRIBE_JOB: &str = "transcribe.job";

/// SQS's largest batch.
const BATCH: usize = 10;

pub(crate) fn sqs_error<E>(e: aws_sdk_sqs::error::SdkError<E>) -> anyhow::Error
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!("SQS: {}", voicehooks::aws::error_summary(&e))
}

/// One DLQ's depth, read without receiving a message (a receive would add to each message's
/// receive count and hide it from a redrive for a while). SQS has no age attribute: the age is
/// CloudWatch's `ApproximateAgeOfOldestMessage` (the stack's dashboard and alarm), or each
/// message's in `dlq peek`, which receives.
#[derive(Debug, Clone, Serialize)]
pub struct DlqStats {
    pub pipeline: WorkQueue,
    pub dlq: String,
    /// Messages waiting (SQS's approximate count).
    pub messages: u64,
    /// Messages someone is looking at right now (hidden for a while).
    pub in_flight: u64,
}

/// A dead-lettered message, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub pipeline: WorkQueue,
    pub message_id: String,
    /// The envelope's kind (`call.status`, …), `transcribe.job` for a Transcribe state
    /// change, `unreadable` for anything else.
    pub kind: String,
    pub call_sid: Option<String>,
    /// The recording or transcription it is about, when the message names one.
    pub subject: Option<String>,
    /// Receives so far (those on the source queue included when SQS moved it).
    pub receive_count: u32,
    /// Seconds since it was sent to this DLQ (by a worker) or to its queue (moved by SQS).
    pub age_secs: u64,
    /// Why the worker gave up: every worker says, on the queue's last receive or at once
    /// when no retry can help. A message SQS moved itself (the worker's own send failed, or
    /// it crashed on the last receive) carries none.
    pub failure_reason: Option<String>,
    pub failed_by: Option<String>,
    /// `permanent` (no retry can help: a redrive leaves it unless forced) or `exhausted`.
    pub failure_kind: Option<String>,
    pub body: String,
    /// When it was sent to this DLQ (SQS's `SentTimestamp`, ms since the epoch).
    #[serde(skip)]
    sent_ms: u64,
    /// The redrive that last moved it, when it came back from one.
    #[serde(skip)]
    redrive_run: Option<String>,
    #[serde(skip)]
    attributes: Vec<(String, MessageAttributeValue)>,
    #[serde(skip)]
    receipt_handle: String,
}

impl DeadLetter {
    fn decode(pipeline: WorkQueue, message: Message, now_ms: u64) -> Self {
        let system = |name: MessageSystemAttributeName| {
            message
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        let user = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        let body = message.body().unwrap_or_default().to_owned();
        let (kind, call_sid, subject) = describe(&body);
        let sent = system(MessageSystemAttributeName::SentTimestamp);
        Self {
            pipeline,
            message_id: message.message_id().unwrap_or_default().to_owned(),
            call_sid: call_sid.or_else(|| user("call_sid")),
            kind,
            subject,
            receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
                .map_or(0, |n| n as u32),
            sent_ms: sent.unwrap_or(0),
            age_secs: sent.map_or(0, |sent| now_ms.saturating_sub(sent) / 1000),
            failure_reason: user(dead_letter::FAILURE_REASON),
            failed_by: user(dead_letter::FAILED_BY),
            failure_kind: user(dead_letter::FAILURE_KIND),
            redrive_run: user(dead_letter::REDRIVE_RUN),
            attributes: message
                .message_attributes()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            receipt_handle: message.receipt_handle().unwrap_or_default().to_owned(),
            body,
        }
    }

    /// The attributes a message carries back to its queue: the webhook's, not the DLQ's.
    fn source_attributes(&self) -> impl Iterator<Item = &(String, MessageAttributeValue)> {
        self.attributes
            .iter()
            .filter(|(name, _)| !dead_letter::ALL.contains(&name.as_str()))
    }

    /// Whether the worker said no retry can help.
    pub fn is_permanent(&self) -> bool {
        self.failure_kind.as_deref() == Some(dead_letter::PERMANENT)
    }
}

/// What a message body is about: (kind, CallSid, subject).
pub fn describe(body: &str) -> (String, Option<String>, Option<String>) {
    if let Ok(envelope) = Envelope::from_json(body) {
        let subject = ["RecordingSid", "TranscriptionSid"]
            .iter()
            .rev()
            .find_map(|name| envelope.params.get(name).map(str::to_owned));
        return (
            envelope.kind.as_str().to_owned(),
            Some(envelope.call_sid),
            subject,
        );
    }
    if let Some(change) = JobStateChange::from_event(body) {
        return (TRANSCRIBE_JOB.to_owned(), None, Some(change.job_name));
    }
    ("unreadable".to_owned(), None, None)
}

/// Which dead letters a redrive moves. Empty lists mean "any".
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kinds: Vec<String>,
    pub calls: Vec<String>,
    pub older_than: Option<Duration>,
    pub newer_than: Option<Duration>,
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let age = Duration::from_secs(letter.age_secs);
        (self.kinds.is_empty() || self.kinds.contains(&letter.kind))
            && (self.calls.is_empty()
                || letter
                    .call_sid
                    .as_ref()
                    .is_some_and(|sid| self.calls.contains(sid)))
            && self.older_than.is_none_or(|min| age >= min)
            && self.newer_than.is_none_or(|max| age <= max)
    }
}

/// Receives a queue's messages once each, holding them hidden until released.
struct Sweep<'a> {
    sqs: &'a aws_sdk_sqs::Client,
    url: &'a str,
    hold: Duration,
    seen: HashSet<String>,
    /// Receipt handles of what was received and is still in the queue.
    held: Vec<String>,
}

impl<'a> Sweep<'a> {
    fn new(sqs: &'a aws_sdk_sqs::Client, url: &'a str, hold: Duration) -> Self {
        Self {
            sqs,
            url,
            hold,
            seen: HashSet::new(),
            held: Vec::new(),
        }
    }

    /// The next messages not seen yet; empty when the queue has no more to give.
    async fn next(&mut self, max: usize) -> anyhow::Result<Vec<Message>> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(self.url)
            .max_number_of_messages(max.clamp(1, BATCH) as i32)
            .visibility_timeout(self.hold.as_secs().clamp(1, 43_200) as i32)
            // A long poll asks every SQS server, so an empty answer means empty.
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(sqs_error)?;
        let mut fresh = Vec::new();
        for message in output.messages.unwrap_or_default() {
            if let Some(handle) = message.receipt_handle() {
                self.held.push(handle.to_owned());
            }
            let id = message.message_id().unwrap_or_default().to_owned();
            if self.seen.insert(id) {
                fresh.push(message);
            }
        }
        Ok(fresh)
    }

    /// Forgets a message that is no longer in the queue.
    fn gone(&mut self, receipt_handle: &str) {
        self.held.retain(|h| h != receipt_handle);
    }

    /// Makes every message still held visible again.
    async fn release(self) -> anyhow::Result<()> {
        for chunk in self.held.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            // An expired handle fails its entry; that message is visible already.
            self.sqs
                .change_message_visibility_batch()
                .queue_url(self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sqs_error)?;
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn depth(stack: &Stack, url: &str) -> anyhow::Result<(u64, u64)> {
    let output = stack
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(sqs_error)?;
    let count = |name| {
        output
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// Reads up to `limit` dead letters of one queue and releases them.
pub async fn peek(stack: &Stack, queues: &Queues, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let mut sweep = Sweep::new(&stack.sqs, &queues.dlq_url, Duration::from_secs(30));
    let mut letters = Vec::new();
    while letters.len() < limit {
        let batch = sweep.next(limit - letters.len()).await?;
        if batch.is_empty() {
            break;
        }
        let now = now_ms();
        letters.extend(
            batch
                .into_iter()
                .map(|m| DeadLetter::decode(queues.pipeline, m, now)),
        );
    }
    sweep.release().await?;
    letters.sort_by_key(|l| std::cmp::Reverse(l.age_secs));
    Ok(letters)
}

/// Depth of one DLQ, receiving nothing.
pub async fn stats(stack: &Stack, queues: &Queues) -> anyhow::Result<DlqStats> {
    let (messages, in_flight) = depth(stack, &queues.dlq_url).await?;
    Ok(DlqStats {
        pipeline: queues.pipeline,
        dlq: queues.dlq_name.clone(),
        messages,
        in_flight,
    })
}

/// What waits in the stack's spill: events a webhook accepted while SQS would not take them,
/// until the spill drainer re-enqueues them (each minute).
#[derive(Debug, Clone, Serialize)]
pub struct SpillStats {
    pub bucket: String,
    pub events: usize,
    /// Seconds since the oldest waiting event was spilled; `None` when empty.
    pub oldest_age_secs: Option<u64>,
}

pub async fn spill_stats(stack: &Stack) -> anyhow::Result<SpillStats> {
    let bucket = stack.spill_bucket().await?;
    let depth = voicehooks::spill::depth(&stack.s3, &bucket)
        .await
        .map_err(|e| anyhow::anyhow!("S3 {bucket}: {e}"))?;
    Ok(SpillStats {
        bucket,
        events: depth.events,
        oldest_age_secs: depth.oldest_secs,
    })
}

/// Every DLQ, and the spill beside them: `voicectl dlq stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Backlog {
    pub dead_letter_queues: Vec<DlqStats>,
    pub spill: SpillStats,
}

/// How a redrive goes.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    pub filter: Filter,
    /// Count what would move; move nothing.
    pub dry_run: bool,
    /// Move the messages whose worker said no retry can help, too.
    pub force: bool,
    /// Messages moved per second at most (spare the workers a flood); `None`: as fast as
    /// SQS takes them.
    pub rate: Option<f64>,
    /// How long a message being looked at stays hidden (a crash releases it after this).
    pub hold: Duration,
}

/// Everything, unfiltered, nothing forced: what `voicectl dlq redrive` does without flags.
impl Default for RedriveOptions {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            dry_run: false,
            force: false,
            rate: None,
            hold: Duration::from_secs(60),
        }
    }
}

/// What a redrive of one DLQ did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveReport {
    pub pipeline: Option<WorkQueue>,
    /// Sent to the source queue and deleted from the DLQ (or, dry run: would be).
    pub moved: u64,
    /// Left in the DLQ: not matching the filter.
    pub skipped: u64,
    /// Left in the DLQ: the worker said no retry can help (`--force` moves them).
    pub permanent: u64,
    /// Left in the DLQ: dead-lettered after the redrive began (a message this run moved,
    /// failing again, most often).
    pub arrived_since_start: u64,
    /// Left in the DLQ: SQS refused the send.
    pub failed: u64,
    /// Sent but not deleted (the DLQ refused the delete): a copy is in both queues, which
    /// the workers absorb.
    pub copied: u64,
    /// Stopped early (Ctrl-C): what is not counted above is still in the DLQ, untouched.
    pub interrupted: bool,
    /// The DLQ's depth when the redrive ended (SQS's approximate count).
    pub left: u64,
    pub dry_run: bool,
}

/// Why a dead letter stays where it is, if it does.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Move,
    NotMatching,
    Permanent,
    ArrivedSinceStart,
}

/// One run: it moves only what was in the DLQ when it began, so a message that fails again
/// at once is moved exactly once and the run always ends. What it moves carries the run's id
/// ([`dead_letter::REDRIVE_RUN`]), which a worker's dead letter (and SQS's own move) keeps:
/// its returns are known whatever the skew between this machine's clock and SQS's. Other
/// events dead-lettered meanwhile (SQS's sent time after the start) wait for the next run.
struct RedriveRun<'a> {
    options: &'a RedriveOptions,
    id: String,
    started_ms: u64,
}

impl RedriveRun<'_> {
    fn verdict(&self, letter: &DeadLetter) -> Verdict {
        if letter.sent_ms > self.started_ms || letter.redrive_run.as_deref() == Some(&self.id) {
            Verdict::ArrivedSinceStart
        } else if !self.options.filter.matches(letter) {
            Verdict::NotMatching
        } else if letter.is_permanent() && !self.options.force {
            Verdict::Permanent
        } else {
            Verdict::Move
        }
    }
}

/// Moves the dead letters of one DLQ that match back to their queue, until the DLQ has no
/// more to give or `interrupt` is set (checked between batches: a batch being moved is
/// finished, so nothing is left half-moved).
pub async fn redrive(
    stack: &Stack,
    queues: &Queues,
    options: &RedriveOptions,
    progress: &ProgressBar,
    interrupt: &AtomicBool,
) -> anyhow::Result<RedriveReport> {
    let mut report = RedriveReport {
        pipeline: Some(queues.pipeline),
        dry_run: options.dry_run,
        ..RedriveReport::default()
    };
    let started_ms = now_ms();
    let run = RedriveRun {
        options,
        id: format!("{started_ms}-{:08x}", fastrand::u32(..)),
        started_ms,
    };
    let (waiting, _) = depth(stack, &queues.dlq_url).await?;
    progress.inc_length(waiting);
    let mut sweep = Sweep::new(&stack.sqs, &queues.dlq_url, options.hold);
    let started = std::time::Instant::now();
    let batch_size = options
        .rate
        .map_or(BATCH, |rate| (rate.ceil() as usize).clamp(1, BATCH));
    while !interrupt.load(Ordering::SeqCst) {
        let batch = sweep.next(batch_size).await?;
        if batch.is_empty() {
            break;
        }
        let now = now_ms();
        let received = batch.len() as u64;
        let mut moving = Vec::new();
        for letter in batch
            .into_iter()
            .map(|m| DeadLetter::decode(queues.pipeline, m, now))
        {
            match run.verdict(&letter) {
                Verdict::Move => moving.push(letter),
                Verdict::NotMatching => report.skipped += 1,
                Verdict::Permanent => report.permanent += 1,
                Verdict::ArrivedSinceStart => report.arrived_since_start += 1,
            }
        }
        if options.dry_run {
            report.moved += moving.len() as u64;
        } else if !moving.is_empty() {
            move_batch(stack, queues, &moving, &run.id, &mut sweep, &mut report).await?;
        }
        progress.inc(received);
        progress.set_message(format!(
            "{}: {} moved, {} left (not matching), {} left (permanent)",
            queues.pipeline, report.moved, report.skipped, report.permanent
        ));
        if let Some(rate) = options.rate {
            let due = Duration::from_secs_f64(report.moved as f64 / rate.max(0.001));
            tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
        }
    }
    report.interrupted = interrupt.load(Ordering::SeqCst);
    sweep.release().await?;
    report.left = depth(stack, &queues.dlq_url).await?.0;
    Ok(report)
}

/// Sends `letters` to the source queue, then deletes the ones SQS accepted from the DLQ.
async fn move_batch(
    stack: &Stack,
    queues: &Queues,
    letters: &[DeadLetter],
    run: &str,
    sweep: &mut Sweep<'_>,
    report: &mut RedriveReport,
) -> anyhow::Result<()> {
    let entries = letters
        .iter()
        .enumerate()
        .map(|(i, letter)| {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&letter.body);
            for (name, value) in letter.source_attributes() {
                entry = entry.message_attributes(name, value.clone());
            }
            entry = entry.message_attributes(
                dead_letter::REDRIVE_RUN,
                voicehooks::queue::string_attribute(run),
            );
            entry.build().expect("id and body are set")
        })
        .collect();
    let sent = stack
        .sqs
        .send_message_batch()
        .queue_url(&queues.queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(sqs_error)?;
    report.failed += sent.failed().len() as u64;
    let accepted: Vec<&DeadLetter> = sent
        .successful()
        .iter()
        .filter_map(|ok| ok.id().parse::<usize>().ok())
        .filter_map(|i| letters.get(i))
        .collect();
    if accepted.is_empty() {
        return Ok(());
    }
    let deletes = accepted
        .iter()
        .enumerate()
        .map(|(i, letter)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&letter.receipt_handle)
                .build()
                .expect("id and receipt handle are set")
        })
        .collect();
    let deleted = stack
        .sqs
        .delete_message_batch()
        .queue_url(&queues.dlq_url)
        .set_entries(Some(deletes))
        .send()
        .await;
    match deleted {
        Ok(output) => {
            for ok in output.successful() {
                if let Some(letter) = ok.id().parse::<usize>().ok().and_then(|i| accepted.get(i)) {
                    sweep.gone(&letter.receipt_handle);
                }
            }
            report.moved += output.successful().len() as u64;
            report.copied += output.failed().len() as u64;
        }
        Err(_) => report.copied += accepted.len() as u64,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(body: &str, sent_ms: u64, kind: Option<&str>) -> DeadLetter {
        DeadLetter {
            pipeline: WorkQueue::Recording,
            message_id: "m".into(),
            kind: "recording.status".into(),
            call_sid: Some("CA1".into()),
            subject: None,
            receive_count: 1,
            age_secs: 0,
            failure_reason: None,
            failed_by: None,
            failure_kind: kind.map(str::to_owned),
            body: body.into(),
            sent_ms,
            redrive_run: None,
            attributes: Vec::new(),
            receipt_handle: String::new(),
        }
    }

    #[test]
    fn a_run_moves_what_was_there_once_and_leaves_the_permanent_unless_forced() {
        let options = RedriveOptions {
            filter: Filter {
                calls: vec!["CA1".into()],
                ..Filter::default()
            },
            dry_run: false,
            force: false,
            rate: None,
            hold: Duration::from_secs(30),
        };
        let mut run = RedriveRun {
            options: &options,
            id: "run-1".into(),
            started_ms: 1_000,
        };
        let mut exhausted = letter("a", 900, Some(dead_letter::EXHAUSTED));
        assert_eq!(run.verdict(&exhausted), Verdict::Move);
        // A copy with the same body, there at the start, moves too (the workers absorb it).
        assert_eq!(run.verdict(&letter("a", 950, None)), Verdict::Move);
        // Back from this run, even stamped before the start (a skewed clock): it stays.
        exhausted.redrive_run = Some("run-1".into());
        assert_eq!(run.verdict(&exhausted), Verdict::ArrivedSinceStart);
        exhausted.redrive_run = Some("an-earlier-run".into());
        assert_eq!(run.verdict(&exhausted), Verdict::Move);
        assert_eq!(
            run.verdict(&letter("b", 1_001, None)),
            Verdict::ArrivedSinceStart
        );
        let permanent = letter("c", 900, Some(dead_letter::PERMANENT));
        assert_eq!(run.verdict(&permanent), Verdict::Permanent);
        let mut other_call = letter("d", 900, None);
        other_call.call_sid = Some("CA2".into());
        assert_eq!(run.verdict(&other_call), Verdict::NotMatching);

        let forced = RedriveOptions {
            force: true,
            ..options.clone()
        };
        run.options = &forced;
        assert_eq!(run.verdict(&permanent), Verdict::Move);
    }
}
