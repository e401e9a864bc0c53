//! Stores finished transcripts on the recording's item: Amazon Transcribe's (EventBridge
//! "Transcribe Job State Change" via SQS) and Twilio's own. See `shared::transcribe`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::TranscriptWorkerConfig;
use shared::lambda::{aws_transcript_worker, batch_response, deadline, queued_messages};
use shared::worker::settle_batch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = TranscriptWorkerConfig::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let (worker, settler) = &aws_transcript_worker(&config, &aws);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let messages = queued_messages(&event.payload);
        let deadline = deadline(&event.context);
        let failed = settle_batch(settler, &messages, deadline, |body| worker.handle(body)).await;
        Ok::<SqsBatchResponse, Error>(batch_response(failed))
    }))
    .await
}
