//! `POST /twilio/recording`: Twilio's recording-status callbacks, queued for the recording
//! worker. See `voicehooks::webhook` for the contract.

use lambda_http::{Error, Request, run, service_fn};
use voicehooks::config::{self, WebhookConfig};
use voicehooks::lambda::{aws_acknowledger, http_response, webhook_request};
use voicehooks::spill::Deadlines;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = WebhookConfig::from_env(config::RECORDING_QUEUE_URL)?;
    let aws = voicehooks::aws::sdk_config().await;
    let acknowledger = &aws_acknowledger(&config, &aws, Deadlines::CALLBACK);
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(
            acknowledger.recording_status(&webhook_request(&req)).await,
        ))
    }))
    .await
}
