//! Applies queued call events (statuses, starts, room events) to DynamoDB. See
//! `voicehooks::calls` for how duplicates and late events are told apart.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use voicehooks::config::StatusWorkerConfig;
use voicehooks::lambda::{aws_status_worker, sqs_batch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = StatusWorkerConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let (worker, settler) = &aws_status_worker(&config, &aws);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(sqs_batch(worker, settler, &event).await)
    }))
    .await
}
