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
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

pub(crate) fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

impl EventQueue for SqsQueue {
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
