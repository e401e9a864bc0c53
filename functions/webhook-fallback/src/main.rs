//! `POST /twilio/fallback`: what Twilio asks when the voice URL failed. An apology and a
//! hangup, whatever AWS is doing. See `shared::voice::VoiceFallback`.

use lambda_http::{Error, Request, run, service_fn};
use shared::config::VerifierConfig;
use shared::lambda::{aws_verifier, http_response, webhook_request};
use shared::voice::VoiceFallback;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = VerifierConfig::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let fallback = &VoiceFallback::new(aws_verifier(&config, &aws));
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(fallback.answer(&webhook_request(&req)).await))
    }))
    .await
}
