//! Every minute (an EventBridge schedule): the events webhooks spilled to S3 because SQS did
//! not take them in time go onto their queues, each deleted from the spill only once SQS has
//! it. See `voicehooks::spill`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use voicehooks::config::SpillDrainerConfig;
use voicehooks::lambda::{aws_spill_drainer, deadline};
use voicehooks::spill::Drained;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = SpillDrainerConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let drainer = &aws_spill_drainer(&config, &aws);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<Drained, Error>(drainer.drain(deadline(&event.context)).await)
        },
    ))
    .await
}
