//! Carrying out what a worker decided about each message, on SQS.

use std::time::Duration;

use futures::future::join_all;

use super::{Disposition, QueuedMessage, retry_delay};
use crate::config::QueueSettings;
use crate::events::Envelope;
use crate::metrics::{self, name};
use crate::queue::{dead_letter, resent};

/// What settling a message does, decided from its [`Disposition`] and its receive count.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Deleted.
    Done,
    /// Sent again as a fresh message after `after`, and deleted.
    SentOn { after: Duration },
    /// Never started: sent again at once as a fresh message (its hand-backs counted, its
    /// first-enqueue time kept), and deleted; its receive is not spent.
    HandedBack,
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

/// How often a message may be handed back unstarted before its deliveries count again: one
/// that never gets its turn in this many batches is starved by a worker that never reaches
/// it, not by one slow batch, and from then on it spends receives and reaches the DLQ with
/// the reason instead of circulating.
pub const MAX_HAND_BACKS: u32 = 20;

/// Told each message's fate before the settler carries it out: the recording worker notes a
/// recording's trouble on its item, so `voicectl call` can say what is happening to it.
pub trait FateNotes: Sync {
    fn note(&self, message: &QueuedMessage<'_>, fate: &Fate) -> impl Future<Output = ()> + Send {
        let _ = (message, fate);
        async {}
    }
}

/// No notes.
impl FateNotes for () {}

/// Carries out dispositions on SQS: a retry sets the message's visibility timeout (Lambda
/// returns it to the queue when the batch response lists it), a dead letter is sent to the
/// DLQ with its reason before the original is deleted (a crash between the two leaves a
/// copy in both, never none). A retry on the queue's last receive is a dead letter too:
/// SQS would move the message on the next receive without a word of why.
#[derive(Clone)]
pub struct Settler {
    sqs: aws_sdk_sqs::Client,
    queue: QueueSettings,
    worker: &'static str,
}

impl Settler {
    pub fn new(sqs: aws_sdk_sqs::Client, queue: &QueueSettings, worker: &'static str) -> Self {
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
            Disposition::NotStarted if message.handed_back < MAX_HAND_BACKS => Fate::HandedBack,
            Disposition::NotStarted => self.fate(
                message,
                &Disposition::retry(format!(
                    "not started before the deadline in {} batches",
                    message.handed_back + 1
                )),
            ),
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
            Fate::SentOn { after } => self.send_again(message, *after, message.handed_back).await,
            Fate::HandedBack => {
                metrics::count(name::HANDED_BACK, 1);
                tracing::info!(
                    message_id = message.message_id,
                    outcome = "handed-back",
                    handed_back = message.handed_back + 1,
                    "not started before the deadline; sent again, no receive spent"
                );
                self.send_again(message, Duration::ZERO, message.handed_back + 1)
                    .await
            }
        }
    }

    /// Sends the message to its queue again, as a fresh message after `after` carrying its
    /// attributes and `handed_back`; returns whether the original must stay (the send
    /// failed: it comes back after its visibility timeout instead, a receive spent).
    async fn send_again(
        &self,
        message: &QueuedMessage<'_>,
        after: Duration,
        handed_back: u32,
    ) -> bool {
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.queue.queue_url)
            .message_body(message.body)
            .delay_seconds(after.as_secs().min(900) as i32)
            .set_message_attributes(Some(carried_attributes(message)));
        if handed_back > 0 {
            send = send.message_attributes(
                resent::HANDED_BACK,
                crate::queue::string_attribute(&handed_back.to_string()),
            );
        }
        match send.send().await {
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
        let send = self
            .sqs
            .send_message()
            .queue_url(&self.queue.dead_letter_queue_url)
            .message_body(message.body)
            .set_message_attributes(Some(carried_attributes(message)))
            .message_attributes(
                dead_letter::FAILURE_REASON,
                attribute(&reason.chars().take(1000).collect::<String>()),
            )
            .message_attributes(dead_letter::FAILED_BY, attribute(self.worker))
            .message_attributes(dead_letter::FAILURE_KIND, attribute(kind));
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

/// What a message keeps when a worker sends it on (again, or to the DLQ): the envelope's
/// kind and CallSid, the redrive that moved it, and when it was first enqueued. At most 4 of
/// the 10 attributes SQS allows a message, leaving room for the DLQ's own.
fn carried_attributes(
    message: &QueuedMessage<'_>,
) -> std::collections::HashMap<String, aws_sdk_sqs::types::MessageAttributeValue> {
    let attribute = crate::queue::string_attribute;
    let mut carried = std::collections::HashMap::new();
    if let Ok(envelope) = Envelope::from_json(message.body) {
        carried.insert("kind".to_owned(), attribute(envelope.kind.as_str()));
        carried.insert("call_sid".to_owned(), attribute(&envelope.call_sid));
    }
    if let Some(run) = message.redrive_run {
        carried.insert(dead_letter::REDRIVE_RUN.to_owned(), attribute(run));
    }
    if let Some(first_sent) = message.first_sent_ms {
        carried.insert(
            resent::FIRST_SENT_AT.to_owned(),
            attribute(&first_sent.to_string()),
        );
    }
    carried
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settler() -> Settler {
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .build(),
        );
        let queue = QueueSettings {
            queue_url: "https://sqs.us-east-1.amazonaws.com/1/q".into(),
            dead_letter_queue_url: "https://sqs.us-east-1.amazonaws.com/1/dlq".into(),
            retry_base: Duration::from_secs(1),
            max_receives: 5,
        };
        Settler::new(sqs, &queue, "test-worker")
    }

    #[test]
    fn a_message_not_started_is_handed_back_even_on_its_last_receive_until_its_bound() {
        let settler = settler();
        let last_receive = QueuedMessage {
            receive_count: 5,
            handed_back: MAX_HAND_BACKS - 1,
            ..QueuedMessage::default()
        };
        assert_eq!(
            settler.fate(&last_receive, &Disposition::NotStarted),
            Fate::HandedBack,
            "not started: its receive is not spent"
        );
        assert!(matches!(
            settler.fate(&last_receive, &Disposition::retry("throttled")),
            Fate::DeadLetter {
                kind: dead_letter::EXHAUSTED,
                ..
            }
        ));
        // At the bound its deliveries count again: retried, then dead-lettered with why.
        let starved = QueuedMessage {
            receive_count: 1,
            handed_back: MAX_HAND_BACKS,
            ..QueuedMessage::default()
        };
        assert!(matches!(
            settler.fate(&starved, &Disposition::NotStarted),
            Fate::Retry { reason, receive: 1, .. } if reason.contains("21 batches")
        ));
        let starved_last = QueuedMessage {
            receive_count: 5,
            ..starved
        };
        assert!(matches!(
            settler.fate(&starved_last, &Disposition::NotStarted),
            Fate::DeadLetter { kind: dead_letter::EXHAUSTED, reason } if reason.contains("not started")
        ));
    }
}
