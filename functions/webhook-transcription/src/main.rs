//! `POST /twilio/transcription`: Twilio's own transcriptions (`<Record transcribe>`), queued
//! for the transcript worker. See `voicehooks::webhook` for the contract.

use lambda_http::{Error, Request, run, service_fn};
use voicehooks::config::{self, WebhookConfig};
use voicehooks::lambda::{aws_acknowledger, http_response, webhook_request};
use voicehooks::spill::Deadlines;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = WebhookConfig::from_env(config::TRANSCRIPT_QUEUE_URL)?;
    let aws = voicehooks::aws::sdk_config().await;
    let acknowledger = &aws_acknowledger(&config, &aws, Deadlines::CALLBACK);
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(
            acknowledger.transcription(&webhook_request(&req)).await,
        ))
    }))
    .await
}
