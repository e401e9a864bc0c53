//! The AWS SDK configuration every function and tool shares. Built once per cold start.
//! `AWS_ENDPOINT_URL` (read by the SDK itself) points every client at the local emulator.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

/// Loads the shared SDK config with timeouts well inside Twilio's 15 s webhook budget.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .load()
        .await
}
