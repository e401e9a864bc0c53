//! `POST /softphone/token`, behind API Gateway's JWT authorizer: a Voice Access Token for the
//! identity in the caller's claims. See `voicehooks::softphone::TokenIssuer`.

use lambda_http::{Error, Request, run, service_fn};
use voicehooks::config::SoftphoneTokenConfig;
use voicehooks::lambda::{aws_token_issuer, http_response, jwt_claims};

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = SoftphoneTokenConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let issuer = &aws_token_issuer(&config, &aws);
    run(service_fn(move |req: Request| async move {
        let reply = issuer
            .answer(req.method(), jwt_claims(&req), std::time::SystemTime::now())
            .await;
        Ok::<_, Error>(http_response(reply))
    }))
    .await
}
