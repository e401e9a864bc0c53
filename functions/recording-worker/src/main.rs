//! Archives finished recordings to S3 and starts their transcription. See
//! `voicehooks::recording` for how each failure is handled and why nothing is stored twice.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use voicehooks::config::RecordingWorkerConfig;
use voicehooks::lambda::{aws_recording_worker, sqs_batch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = RecordingWorkerConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let (worker, settler) = &aws_recording_worker(&config, &aws);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(sqs_batch(worker, settler, &event).await)
    }))
    .await
}
