//! Stores finished transcripts on the recording's item: Amazon Transcribe's (EventBridge
//! "Transcribe Job State Change" via SQS) and Twilio's own. See `voicehooks::transcribe`.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use voicehooks::config::TranscriptWorkerConfig;
use voicehooks::lambda::{aws_transcript_worker, sqs_batch};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = TranscriptWorkerConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let (worker, settler) = &aws_transcript_worker(&config, &aws);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(sqs_batch(worker, settler, &event).await)
    }))
    .await
}
