//! `POST /twilio/status`: Twilio's call-status callbacks, and `POST /twilio/conference`: the
//! conference rooms' events (the same contract and queue, so one function serves both). See
//! `voicehooks::webhook` for the contract.

use lambda_http::{Error, Request, run, service_fn};
use voicehooks::config::{self, WebhookConfig};
use voicehooks::events::EventKind;
use voicehooks::lambda::{aws_acknowledger, http_response, webhook_request};
use voicehooks::spill::Deadlines;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = WebhookConfig::from_env(config::STATUS_QUEUE_URL)?;
    let aws = voicehooks::aws::sdk_config().await;
    let acknowledger = &aws_acknowledger(&config, &aws, Deadlines::CALLBACK);
    run(service_fn(move |req: Request| async move {
        let req = webhook_request(&req);
        let reply = match EventKind::of_callback_path(req.raw_path) {
            Some(EventKind::ConferenceStatus) => acknowledger.conference_status(&req).await,
            _ => acknowledger.call_status(&req).await,
        };
        Ok::<_, Error>(http_response(reply))
    }))
    .await
}
