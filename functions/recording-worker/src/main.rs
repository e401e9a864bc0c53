//! Archives finished recordings to S3 and starts their transcription. See `shared::recording`
//! for how each failure is handled and why nothing is stored twice.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::RecordingWorkerConfig;
use shared::lambda::{aws_recording_worker, batch_response, deadline, queued_messages};
use shared::worker::settle_batch_noting;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = RecordingWorkerConfig::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let (worker, settler) = &aws_recording_worker(&config, &aws);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let messages = queued_messages(&event.payload);
        let deadline = deadline(&event.context);
        // The worker notes a recording's trouble on its item as each message is settled.
        let failed = settle_batch_noting(
            settler,
            &messages,
            deadline,
            |body| worker.handle(body, deadline),
            worker,
        )
        .await;
        Ok::<SqsBatchResponse, Error>(batch_response(failed))
    }))
    .await
}
