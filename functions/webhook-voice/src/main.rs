//! `POST /twilio/voice` and its action routes: TwiML from `config/flows.toml` (embedded at
//! build time), and a `call.started` event on the status queue. See `voicehooks::voice`.

use lambda_http::{Error, Request, run, service_fn};
use voicehooks::config::{self, WebhookConfig};
use voicehooks::flows::Flows;
use voicehooks::lambda::{aws_acknowledger, http_response, webhook_request};
use voicehooks::spill::Deadlines;
use voicehooks::voice::VoiceWebhook;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = WebhookConfig::from_env(config::STATUS_QUEUE_URL)?;
    let aws = voicehooks::aws::sdk_config().await;
    let enqueue_deadline = config::enqueue_deadline()?;
    let voice = &VoiceWebhook::new(
        aws_acknowledger(&config, &aws, Deadlines::within(enqueue_deadline)),
        Flows::built_in(),
        &config.verifier.public_base_url,
        enqueue_deadline,
    );
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(voice.answer(&webhook_request(&req)).await))
    }))
    .await
}
