//! Applies queued call-status events to DynamoDB. See `shared::store` for how duplicates and
//! late events are told apart.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config::StatusWorkerConfig;
use shared::lambda::{batch_response, deadline, queued_messages};
use shared::store::DynamoCallStore;
use shared::worker::{Settler, decide_status_batch_by};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(env!("CARGO_PKG_NAME"));
    let config = StatusWorkerConfig::from_env()?;
    let aws = shared::aws::sdk_config().await;
    let store = DynamoCallStore::new(shared::aws::dynamodb_client(&aws), config.calls_table);
    let settler = Settler::new(
        shared::aws::sqs_client(&aws),
        &config.queue,
        env!("CARGO_PKG_NAME"),
    );
    let (store, settler) = (&store, &settler);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let messages = queued_messages(&event.payload);
        let deadline = deadline(&event.context);
        let decided = decide_status_batch_by(store, &messages, deadline).await;
        let failed = settler.settle_all(&decided).await;
        Ok::<SqsBatchResponse, Error>(batch_response(failed))
    }))
    .await
}
