//! The whole local stack in one value: start it, use it, drop it (everything stops).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use shared::config::{self, local};

use crate::emulator::Emulator;
use crate::functions::{FunctionHost, FunctionSpec};
use crate::poller::{Poller, PollerConfig};
use crate::resources::{self, Resources, StackNames};
use crate::workspace::Workspace;

pub const WEBHOOK_STATUS: &str = "webhook-status";
pub const WEBHOOK_VOICE: &str = "webhook-voice";
pub const STATUS_WORKER: &str = "status-worker";
/// Status-worker instances, and batches the poller keeps in flight.
const WORKER_INSTANCES: usize = 3;

pub struct StackOptions {
    /// Names the run's log folder under `.local/logs/`.
    pub label: String,
    /// Visibility timeout the local poller receives with: how soon a failed message returns.
    pub retry_after_secs: i32,
    /// Concurrent instances of each webhook function.
    pub webhook_instances: usize,
    /// The port of the Lambda APIs (function URLs, Invoke, Runtime); a free one when `None`.
    pub lambda_port: Option<u16>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            label: "stack".into(),
            retry_after_secs: 2,
            webhook_instances: 4,
            lambda_port: None,
        }
    }
}

pub struct LocalStack {
    pub workspace: Workspace,
    pub log_dir: PathBuf,
    pub sdk: SdkConfig,
    pub resources: Resources,
    pub status_poller: Poller,
    // Dropped in declaration order: poller, then functions, then the emulator.
    pub functions: FunctionHost,
    pub emulator: Emulator,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let workspace = Workspace::locate();
        let log_dir = workspace.log_dir(&options.label)?;
        let emulator = Emulator::start(&workspace, &log_dir).await?;
        let sdk = emulator.sdk_config().await;
        let resources = resources::bootstrap(&sdk, StackNames::new(local::STACK_NAME)).await?;

        let with_emulator = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            let mut env = emulator.env();
            env.extend(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            env
        };
        let webhook_env = with_emulator(&[
            (config::PUBLIC_BASE_URL, local::PUBLIC_BASE_URL),
            (config::STATUS_QUEUE_URL, &resources.status_queue_url),
            (config::TWILIO_SECRET_ID, &resources.twilio_secret_id),
        ]);
        let specs = vec![
            FunctionSpec {
                name: WEBHOOK_STATUS,
                env: webhook_env.clone(),
                instances: options.webhook_instances,
            },
            FunctionSpec {
                name: WEBHOOK_VOICE,
                env: webhook_env,
                instances: options.webhook_instances,
            },
            FunctionSpec {
                name: STATUS_WORKER,
                env: with_emulator(&[(config::CALLS_TABLE, &resources.calls_table)]),
                instances: WORKER_INSTANCES,
            },
        ];
        let functions =
            FunctionHost::start(&workspace, &log_dir, options.lambda_port, specs).await?;
        let status_poller = Poller::start(
            &sdk,
            &functions.endpoint(),
            PollerConfig {
                queue_url: resources.status_queue_url.clone(),
                queue_arn: resources.names.queue_arn(&resources.names.status_queue()),
                function: STATUS_WORKER.into(),
                batch_size: 10,
                visibility_timeout_secs: options.retry_after_secs,
                concurrency: WORKER_INSTANCES,
            },
        );
        Ok(Self {
            workspace,
            log_dir,
            sdk,
            resources,
            status_poller,
            functions,
            emulator,
        })
    }

    /// The routes API Gateway would have: (public URL prefix, function URL prefix). The local
    /// "Twilio" signs for the first and delivers to the second.
    pub fn routes(&self) -> Vec<(String, String)> {
        [
            ("/twilio/status", WEBHOOK_STATUS),
            ("/twilio/voice", WEBHOOK_VOICE),
        ]
        .into_iter()
        .map(|(path, function)| {
            (
                format!("{}{path}", local::PUBLIC_BASE_URL),
                format!("{}{path}", self.functions.function_url(function)),
            )
        })
        .collect()
    }

    /// Where the local "Twilio" delivers status callbacks (the function URL).
    pub fn status_webhook_target(&self) -> String {
        format!(
            "{}/twilio/status",
            self.functions.function_url(WEBHOOK_STATUS)
        )
    }

    /// The URL Twilio was given, which requests are signed for.
    pub fn status_webhook_public(&self) -> String {
        format!("{}/twilio/status", local::PUBLIC_BASE_URL)
    }

    /// Messages in a queue: visible plus in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> anyhow::Result<u64> {
        let output = aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let attributes = output.attributes().cloned().unwrap_or_default();
        let count = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    /// Waits until the status queue is empty and the poller idle, several checks in a row.
    pub async fn wait_until_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut quiet_checks = 0;
        while quiet_checks < 3 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the status queue did not drain within {timeout:?}"
            );
            let quiet = self.queue_depth(&self.resources.status_queue_url).await? == 0
                && self.status_poller.is_idle();
            quiet_checks = if quiet { quiet_checks + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(())
    }

    /// Stops the poller, the functions and the emulator (dropping does the same).
    pub async fn stop(mut self) {
        self.status_poller.stop().await;
        self.functions.stop();
        self.emulator.stop();
    }
}
