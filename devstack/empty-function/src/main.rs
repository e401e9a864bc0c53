//! The empty function: the Lambda runtime and nothing else. Every function's cold start is
//! printed as a ratio to this one's, so the bench shows what our own start-up adds.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(())
    }))
    .await
}
