//! Where accepted webhooks go: a queue of envelopes.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;

use crate::events::Envelope;

#[derive(Debug, thiserror::Error)]
#[error("the event could not be queued: {0}")]
pub struct QueueError(pub String);

/// A queue that accepts envelopes.
pub trait EventQueue: Send + Sync {
    fn send(&self, envelope: &Envelope) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// [`EventQueue`] on SQS. The kind and CallSid ride as message attributes as well, so ops can
/// filter a DLQ without decoding bodies.
#[derive(Clone)]
pub struct SqsEventQueue {
    client: Client,
    queue_url: String,
}

impl SqsEventQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// What a worker adds to a message it dead-letters, for `voicectl dlq` (and anyone reading a
/// DLQ): why, which worker, and whether a retry could ever help.
pub mod dead_letter {
    /// The worker's reason, root cause included (at most 1,000 characters).
    pub const FAILURE_REASON: &str = "failure_reason";
    /// The worker that gave up (`status-worker`, …).
    pub const FAILED_BY: &str = "failed_by";
    /// [`PERMANENT`] or [`EXHAUSTED`].
    pub const FAILURE_KIND: &str = "failure_kind";
    /// No retry can help (a refused URL, bad credentials, not an event): a redrive only
    /// sends it back to fail again, so `voicectl dlq redrive` leaves it unless forced.
    pub const PERMANENT: &str = "permanent";
    /// Still failing on the queue's last receive: a redrive after a fix may succeed.
    pub const EXHAUSTED: &str = "exhausted";
    /// Set by `voicectl dlq redrive` on what it moves, and carried back into the DLQ by a
    /// worker that dead-letters it again (SQS's own move keeps every attribute too): a run
    /// never moves its own returns, whatever the clocks say.
    pub const REDRIVE_RUN: &str = "redrive_run";
    /// The attributes above: the DLQ's, not the event's (a redrive drops them).
    pub const ALL: [&str; 4] = [FAILURE_REASON, FAILED_BY, FAILURE_KIND, REDRIVE_RUN];
}

/// What a worker's own re-send of a message adds ([`crate::worker::Disposition::NotStarted`],
/// a paused archive's next part), so the fresh message is still the same event to ops.
pub mod resent {
    /// When the event was first enqueued, in ms since the epoch (SQS's `SentTimestamp` of
    /// the first message; a re-send would otherwise start the clock again).
    pub const FIRST_SENT_AT: &str = "first_sent_at";
    /// How often it was handed back unstarted at a batch deadline.
    pub const HANDED_BACK: &str = "handed_back";
}

/// An SQS `String` message attribute.
pub fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

impl EventQueue for SqsEventQueue {
    async fn send(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(envelope.to_json())
            .message_attributes("kind", string_attribute(envelope.kind.as_str()))
            .message_attributes("call_sid", string_attribute(&envelope.call_sid))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| QueueError(crate::aws::error_summary(&e)))
    }
}

/// A shared queue is a queue (one client serves several handlers or tests).
impl<Q: EventQueue> EventQueue for std::sync::Arc<Q> {
    fn send(&self, envelope: &Envelope) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(envelope)
    }
}
