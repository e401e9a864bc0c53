//! A local stand-in for Lambda's SQS event source mapping: receives batches, invokes the
//! worker through the Lambda Invoke API with an SQS event, and deletes only the messages the
//! worker did not report as failed (`ReportBatchItemFailures`). Failed messages come back
//! after their visibility timeout and, past maxReceiveCount, SQS moves them to the DLQ.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::SqsBatchResponse;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Value, json};

use crate::emulator::REGION;
use crate::task::Background;

/// What the poller has done so far.
#[derive(Debug, Default)]
pub struct PollerStats {
    pub batches: AtomicU64,
    pub received: AtomicU64,
    pub deleted: AtomicU64,
    pub reported_failed: AtomicU64,
    pub invoke_errors: AtomicU64,
    /// Invocations that never answered (their worker instance was killed).
    pub timed_out: AtomicU64,
    /// Batches currently being handled (0 when idle).
    pub in_flight: AtomicU64,
}

pub struct PollerConfig {
    pub queue_url: String,
    pub queue_arn: String,
    pub function: String,
    pub batch_size: i32,
    /// Overrides the queue's visibility timeout on receive, so that locally a failed
    /// message is retried within seconds rather than after the deployed 60 s.
    pub visibility_timeout_secs: i32,
    /// Batches in flight at once, as Lambda's pollers run several (each needs a worker
    /// instance to be served at once).
    pub concurrency: usize,
    /// The function's timeout: an invocation that has not answered by then (its instance
    /// crashed) fails the batch, as on Lambda.
    pub function_timeout: Duration,
}

pub struct Poller {
    pub stats: Arc<PollerStats>,
    task: Background,
}

impl Poller {
    pub fn start(sdk: &SdkConfig, lambda_endpoint: &str, config: PollerConfig) -> Self {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let lambda_config = aws_sdk_lambda::config::Builder::from(sdk)
            .endpoint_url(lambda_endpoint)
            .build();
        let lambda = aws_sdk_lambda::Client::from_conf(lambda_config);
        let stats = Arc::new(PollerStats::default());
        let task_stats = stats.clone();
        let task = Background::spawn(|mut stopped| async move {
            let pollers = (0..config.concurrency.max(1)).map(|_| async {
                loop {
                    poll_once(&sqs, &lambda, &config, &task_stats).await;
                }
            });
            tokio::select! {
                _ = stopped.changed() => {}
                _ = futures::future::join_all(pollers) => {}
            }
        });
        Self { stats, task }
    }

    pub fn is_idle(&self) -> bool {
        self.stats.in_flight.load(Ordering::SeqCst) == 0
    }

    pub async fn stop(&mut self) {
        self.task.stop().await;
    }
}

async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    config: &PollerConfig,
    stats: &PollerStats,
) {
    let received = sqs
        .receive_message()
        .queue_url(&config.queue_url)
        .max_number_of_messages(config.batch_size)
        .wait_time_seconds(1)
        .visibility_timeout(config.visibility_timeout_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await;
    let messages = match received {
        Ok(output) => output.messages.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    if messages.is_empty() {
        return;
    }
    stats.in_flight.fetch_add(1, Ordering::SeqCst);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .received
        .fetch_add(messages.len() as u64, Ordering::Relaxed);
    handle_batch(sqs, lambda, config, stats, &messages).await;
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
}

async fn handle_batch(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    config: &PollerConfig,
    stats: &PollerStats,
    messages: &[Message],
) {
    let event = sqs_event(messages, &config.queue_arn);
    let invoked = tokio::time::timeout(
        config.function_timeout,
        lambda
            .invoke()
            .function_name(&config.function)
            .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
            .send(),
    )
    .await;
    // As Lambda's event source mapping: an invocation error fails the whole batch.
    let failed: HashSet<String> = match invoked {
        Err(_) => {
            tracing::warn!(
                function = config.function,
                "worker invocation timed out; batch will be retried"
            );
            stats.invoke_errors.fetch_add(1, Ordering::Relaxed);
            stats.timed_out.fetch_add(1, Ordering::Relaxed);
            all_ids(messages)
        }
        Ok(invoked) => match invoked {
            Ok(output) if output.function_error().is_none() => {
                let payload = output
                    .payload()
                    .map(|p| p.as_ref().to_vec())
                    .unwrap_or_default();
                match serde_json::from_slice::<SqsBatchResponse>(&payload) {
                    Ok(response) => response
                        .batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect(),
                    Err(_) => all_ids(messages),
                }
            }
            Ok(output) => {
                tracing::warn!(
                    function_error = output.function_error(),
                    "worker invocation failed; batch will be retried"
                );
                stats.invoke_errors.fetch_add(1, Ordering::Relaxed);
                all_ids(messages)
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_lambda::error::DisplayErrorContext(e), "invoke failed; batch will be retried");
                stats.invoke_errors.fetch_add(1, Ordering::Relaxed);
                all_ids(messages)
            }
        },
    };
    stats
        .reported_failed
        .fetch_add(failed.len() as u64, Ordering::Relaxed);
    let done: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| m.message_id().is_some_and(|id| !failed.contains(id)))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    if done.is_empty() {
        return;
    }
    let count = done.len() as u64;
    match sqs
        .delete_message_batch()
        .queue_url(&config.queue_url)
        .set_entries(Some(done))
        .send()
        .await
    {
        Ok(output) => {
            stats
                .deleted
                .fetch_add(count - output.failed().len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "delete failed; messages will be redelivered")
        }
    }
}

fn all_ids(messages: &[Message]) -> HashSet<String> {
    messages
        .iter()
        .filter_map(|m| m.message_id().map(str::to_owned))
        .collect()
}

/// An SQS event as Lambda delivers it.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: HashMap<String, String> =
                m.attributes().map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect()).unwrap_or_default();
            let message_attributes: HashMap<String, Value> = m
                .message_attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .map(|(k, v)| {
                            (k.clone(), json!({"stringValue": v.string_value(), "dataType": v.data_type(), "stringListValues": [], "binaryListValues": []}))
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}
