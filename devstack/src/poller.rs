//! A local stand-in for Lambda's SQS event source mapping, configured from the mapping the
//! stack made: receives batches of up to `BatchSize`, gathering for up to
//! `MaximumBatchingWindowInSeconds`, with up to `MaximumConcurrency` batches in flight;
//! invokes the worker through the Lambda Invoke API with an SQS event; and deletes what
//! succeeded. With `ReportBatchItemFailures` that is every message the worker did not report
//! as failed; without it, a successful invocation deletes the whole batch ("Handling errors
//! for an SQS event source in Lambda", Lambda Developer Guide). Failed messages come back
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
    /// The most messages one invocation was given.
    pub largest_batch: AtomicU64,
}

pub struct PollerConfig {
    pub queue_url: String,
    pub queue_arn: String,
    pub function: String,
    pub batch_size: i32,
    /// How long a batch is gathered before it is invoked short of `batch_size`.
    pub batching_window: Duration,
    /// Whether the worker's `batchItemFailures` answer is read (else it is ignored).
    pub report_batch_item_failures: bool,
    /// The visibility timeout each receive sets: long enough that a message is never handed
    /// to a second poller while an invocation may still hold it ([`invocation_limit`] plus
    /// the batching window). Sooner retries are the worker's own (it sets each failed
    /// message's visibility to its backoff); this only brings back what a crashed or
    /// killed instance never settled.
    pub visibility_timeout_secs: i32,
    /// Batches in flight at once, as Lambda's pollers run several (each needs a worker
    /// instance to be served at once).
    pub concurrency: usize,
    /// How long an invocation may take before the poller gives up on it ([`invocation_limit`]
    /// of the function's timeout): one that never answers (its instance was killed) fails
    /// the batch, as on Lambda.
    pub invocation_limit: Duration,
}

/// How long an invocation can take, from the poller's side: the function's timeout, plus
/// the Init phase a cold start runs first, which Lambda bounds separately at 10 s ("Lambda
/// execution environment lifecycle": the Init phase is limited to 10 seconds).
pub fn invocation_limit(function_timeout: Duration) -> Duration {
    function_timeout + Duration::from_secs(10)
}

impl PollerConfig {
    /// As the stack's mapping has it, for a function whose timeout is `function_timeout`.
    pub fn from_mapping(mapping: &crate::deploy::QueueMapping, function_timeout: Duration) -> Self {
        let limit = invocation_limit(function_timeout);
        Self {
            queue_url: mapping.queue_url.clone(),
            queue_arn: mapping.queue_arn.clone(),
            function: mapping.function.clone(),
            batch_size: mapping.batch_size,
            batching_window: mapping.batching_window,
            report_batch_item_failures: mapping.report_batch_item_failures,
            // A message waits in the batching window while its visibility runs, then its
            // invocation may take the whole limit (the deployed queues' visibility is six
            // times the timeout, which covers this and Lambda's retries of a throttled
            // invocation).
            visibility_timeout_secs: i32::try_from((limit + mapping.batching_window).as_secs())
                .unwrap_or(i32::MAX),
            concurrency: mapping.max_concurrency,
            invocation_limit: limit,
        }
    }
}

pub struct Poller {
    pub stats: Arc<PollerStats>,
    task: Background,
}

impl Poller {
    pub fn start(sdk: &SdkConfig, lambda_endpoint: &str, config: PollerConfig) -> Self {
        let (sqs, lambda) = clients(sdk, lambda_endpoint);
        let stats = Arc::new(PollerStats::default());
        let task_stats = stats.clone();
        let task = Background::spawn(|mut stopped| async move {
            let scale = Scaling::new(config.concurrency);
            let pollers = (0..config.concurrency.max(1)).map(|slot| {
                let (sqs, lambda, config, stats, scale) =
                    (&sqs, &lambda, &config, &task_stats, &scale);
                async move {
                    loop {
                        if slot >= scale.active() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                        let received = poll_once(sqs, lambda, config, stats).await;
                        scale.after(received, config.batch_size);
                    }
                }
            });
            tokio::select! {
                _ = stopped.changed() => {}
                _ = futures::future::join_all(pollers) => {}
            }
        });
        Self { stats, task }
    }

    /// One batch, as one of the mapping's pollers takes it: received (gathered for the
    /// batching window), invoked, the successes deleted. How many messages it held. For a
    /// test that must see batches one at a time (with its mapping's poller stopped).
    pub async fn one_batch(sdk: &SdkConfig, lambda_endpoint: &str, config: &PollerConfig) -> usize {
        let (sqs, lambda) = clients(sdk, lambda_endpoint);
        poll_once(&sqs, &lambda, config, &PollerStats::default()).await
    }

    pub fn is_idle(&self) -> bool {
        self.stats.in_flight.load(Ordering::SeqCst) == 0
    }

    pub async fn stop(&mut self) {
        self.task.stop().await;
    }
}

/// How many batches the mapping processes at once, as Lambda scales an SQS mapping ("Configuring
/// scaling behavior for SQS event source mappings", Lambda Developer Guide): five when
/// messages are available, up by as many as 300 a minute while they still are (one more at
/// most every 200 ms here), never past `MaximumConcurrency`, and back to five when traffic
/// is low (a receive comes back empty).
struct Scaling {
    active: std::sync::atomic::AtomicUsize,
    last_raised: std::sync::Mutex<tokio::time::Instant>,
    floor: usize,
    max: usize,
}

impl Scaling {
    const START: usize = 5;
    const RAISE_EVERY: Duration = Duration::from_millis(200);

    fn new(max: usize) -> Self {
        let floor = Self::START.min(max.max(1));
        Self {
            active: floor.into(),
            last_raised: std::sync::Mutex::new(tokio::time::Instant::now()),
            floor,
            max: max.max(1),
        }
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// After a receive of `received` messages (a full batch means a backlog).
    fn after(&self, received: usize, batch_size: i32) {
        if received == 0 {
            self.active.store(self.floor, Ordering::Relaxed);
            return;
        }
        if received < usize::try_from(batch_size).unwrap_or(usize::MAX) {
            return;
        }
        let mut last = self
            .last_raised
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= Self::RAISE_EVERY && self.active() < self.max {
            self.active.fetch_add(1, Ordering::Relaxed);
            *last = tokio::time::Instant::now();
        }
    }
}

fn clients(
    sdk: &SdkConfig,
    lambda_endpoint: &str,
) -> (aws_sdk_sqs::Client, aws_sdk_lambda::Client) {
    let lambda_config = aws_sdk_lambda::config::Builder::from(sdk)
        .endpoint_url(lambda_endpoint)
        .build();
    (
        aws_sdk_sqs::Client::new(sdk),
        aws_sdk_lambda::Client::from_conf(lambda_config),
    )
}

/// Receives one batch and has the worker handle it; how many messages it received.
async fn poll_once(
    sqs: &aws_sdk_sqs::Client,
    lambda: &aws_sdk_lambda::Client,
    config: &PollerConfig,
    stats: &PollerStats,
) -> usize {
    let mut messages = match receive(sqs, config, config.batch_size).await {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "receive failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return 0;
        }
    };
    if messages.is_empty() {
        return 0;
    }
    // The batching window: more of the batch is gathered until it is full or the window,
    // counted from the first message, has passed.
    let window_ends = tokio::time::Instant::now() + config.batching_window;
    while messages.len() < usize::try_from(config.batch_size).unwrap_or(0)
        && tokio::time::Instant::now() < window_ends
    {
        let room = config.batch_size - i32::try_from(messages.len()).unwrap_or(0);
        match receive(sqs, config, room).await {
            Ok(more) if more.is_empty() => break,
            Ok(more) => messages.extend(more),
            Err(_) => break,
        }
    }
    stats.in_flight.fetch_add(1, Ordering::SeqCst);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .received
        .fetch_add(messages.len() as u64, Ordering::Relaxed);
    stats
        .largest_batch
        .fetch_max(messages.len() as u64, Ordering::Relaxed);
    handle_batch(sqs, lambda, config, stats, &messages).await;
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    messages.len()
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    config: &PollerConfig,
    up_to: i32,
) -> Result<
    Vec<Message>,
    aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::receive_message::ReceiveMessageError>,
> {
    // SQS hands out at most 10 messages a receive.
    let output = sqs
        .receive_message()
        .queue_url(&config.queue_url)
        .max_number_of_messages(up_to.clamp(1, 10))
        .wait_time_seconds(1)
        .visibility_timeout(config.visibility_timeout_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await?;
    Ok(output.messages.unwrap_or_default())
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
        config.invocation_limit,
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
            Ok(output)
                if output.function_error().is_none() && !config.report_batch_item_failures =>
            {
                HashSet::new()
            }
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
