//! `POST /twilio/transcription`: Twilio's own transcriptions (`<Record transcribe>`), queued
//! for the transcript worker. See `shared::webhook` for the contract.

use lambda_http::{Error, Request, run, service_fn};
use shared::config::{self, WebhookConfig};
use shared::lambda::{aws_acknowledger, http_response, webhook_request};
use shared::spill::Deadlines;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = WebhookConfig::from_env(config::TRANSCRIPT_QUEUE_URL)?;
    let aws = shared::aws::sdk_config().await;
    let acknowledger = &aws_acknowledger(&config, &aws, Deadlines::CALLBACK);
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(
            acknowledger.transcription(&webhook_request(&req)).await,
        ))
    }))
    .await
}
