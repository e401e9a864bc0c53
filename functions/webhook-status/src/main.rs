//! `POST /twilio/status`: Twilio's call-status callbacks. See `shared::webhook` for the contract.

use lambda_http::{Error, Request, run, service_fn};
use shared::config::{self, WebhookConfig};
use shared::lambda::{http_response, webhook_request};
use shared::queue::SqsQueue;
use shared::secrets::SecretsManagerTokens;
use shared::webhook::Acknowledger;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = WebhookConfig::from_env(config::STATUS_QUEUE_URL)?;
    let aws = shared::aws::sdk_config().await;
    let acknowledger = Acknowledger::new(
        config.public_base_url,
        SqsQueue::new(aws_sdk_sqs::Client::new(&aws), config.queue_url),
        SecretsManagerTokens::new(
            aws_sdk_secretsmanager::Client::new(&aws),
            config.secret_id,
            config.secret_ttl,
        ),
    );
    let acknowledger = &acknowledger;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(http_response(
            acknowledger.call_status(&webhook_request(&req)).await,
        ))
    }))
    .await
}
