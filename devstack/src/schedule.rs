//! A local stand-in for an EventBridge schedule: invokes a function through the Lambda Invoke
//! API every period with a "Scheduled Event", as the template's `Schedule` event does. Only
//! the spill drainer runs on one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::{Value, json};

use crate::emulator::{ACCOUNT_ID, REGION};
use crate::task::Background;

/// What the schedule's invocations did.
#[derive(Debug, Default)]
pub struct ScheduleStats {
    pub invocations: AtomicU64,
    pub failed: AtomicU64,
    /// The sum of a numeric field of the answers (the drainer's `drained`).
    pub total: AtomicU64,
    /// That field in the last answer (the drainer's `left`).
    pub last_left: AtomicU64,
}

pub struct Schedule {
    pub stats: Arc<ScheduleStats>,
    task: Background,
}

/// The event EventBridge sends a scheduled target.
fn scheduled_event(rule: &str) -> Value {
    json!({
        "version": "0",
        "id": format!("{:032x}", fastrand_id()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": voicehooks::events::now_rfc3339(),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule}")],
        "detail": {}
    })
}

fn fastrand_id() -> u128 {
    use rand::Rng;
    rand::rng().random()
}

impl Schedule {
    /// Invokes `function` every `period`, counting `total_field` and `left_field` of its
    /// answers.
    pub fn start(
        sdk: &SdkConfig,
        lambda_endpoint: &str,
        function: &str,
        period: Duration,
        (total_field, left_field): (&'static str, &'static str),
    ) -> Self {
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(sdk)
                .endpoint_url(lambda_endpoint)
                .build(),
        );
        let stats = Arc::new(ScheduleStats::default());
        let (task_stats, function) = (stats.clone(), function.to_owned());
        let task = Background::spawn(|mut stopped| async move {
            let rule = format!("{function}-schedule");
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(period) => {}
                }
                task_stats.invocations.fetch_add(1, Ordering::Relaxed);
                let answer = lambda
                    .invoke()
                    .function_name(&function)
                    .payload(aws_sdk_lambda::primitives::Blob::new(
                        scheduled_event(&rule).to_string(),
                    ))
                    .send()
                    .await;
                let answer: Option<Value> = answer
                    .ok()
                    .filter(|a| a.function_error().is_none())
                    .and_then(|a| serde_json::from_slice(a.payload()?.as_ref()).ok());
                match answer {
                    Some(answer) => {
                        let field = |name| answer.get(name).and_then(Value::as_u64).unwrap_or(0);
                        task_stats
                            .total
                            .fetch_add(field(total_field), Ordering::Relaxed);
                        task_stats
                            .last_left
                            .store(field(left_field), Ordering::Relaxed);
                    }
                    None => {
                        task_stats.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self { stats, task }
    }

    pub async fn stop(&mut self) {
        self.task.stop().await;
    }
}
