//! On the `ReconcileSchedule` (EventBridge): Twilio's calls and recordings of the last
//! `ReconcileWindowSeconds` against the table; what no callback delivered is queued for the
//! workers. See `voicehooks::reconcile`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use voicehooks::config::ReconcilerConfig;
use voicehooks::lambda::AwsReconciler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    voicehooks::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = ReconcilerConfig::from_env()?;
    let aws = voicehooks::aws::sdk_config().await;
    let reconciler = &AwsReconciler::new(&config, &aws);
    run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move { reconciler.run().await },
    ))
    .await
}
