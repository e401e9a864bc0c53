//! `POST /twilio/fallback`: what Twilio asks when the voice URL failed. An apology and a
//! hangup, whatever AWS is doing. See `voicehooks::voice::VoiceFallback`.

use lambda_http::{Error, Request, run, service_fn};
use voicehooks::config::VerifierConfig;
use voicehooks::lambda::{aws_verifier, http_response, webhook_request};
use voicehooks::voice::VoiceFallback;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = VerifierConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let fallback = &VoiceFallback::new(aws_verifier(&config, &aws));
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(fallback.answer(&webhook_request(&req)).await))
    }))
    .await
}
