//! The stack's resources, created in the emulator with the names and keys that
//! `infra/template.yaml` declares for a stack named [`local::STACK_NAME`]
//! (`tests/infra_agreement.rs` checks that the two agree).

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use shared::config::local;
use shared::store::{PARTITION_KEY, SORT_KEY};

use crate::emulator::{ACCOUNT_ID, REGION};

/// As the template: `VisibilityTimeout` is six times the worker's 10 s timeout.
pub const STATUS_QUEUE_VISIBILITY_TIMEOUT_SECS: u32 = 60;
pub const STATUS_WORKER_TIMEOUT_SECS: u32 = 10;
/// As the template's `MaxReceiveCount` default.
pub const MAX_RECEIVE_COUNT: u32 = 5;
pub const STATUS_QUEUE_RETENTION_SECS: u32 = 345_600;
pub const DLQ_RETENTION_SECS: u32 = 1_209_600;

/// Resource names derived from a stack name, as the template's `!Sub` expressions do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackNames {
    pub stack: String,
}

impl StackNames {
    pub fn new(stack: &str) -> Self {
        Self {
            stack: stack.to_owned(),
        }
    }
    pub fn status_queue(&self) -> String {
        format!("{}-status", self.stack)
    }
    pub fn status_dlq(&self) -> String {
        format!("{}-status-dlq", self.stack)
    }
    pub fn calls_table(&self) -> String {
        format!("{}-calls", self.stack)
    }
    pub fn twilio_secret(&self) -> String {
        format!("{}/twilio", self.stack)
    }
    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
    }
}

/// What the bootstrap created.
#[derive(Debug, Clone)]
pub struct Resources {
    pub names: StackNames,
    pub status_queue_url: String,
    pub status_dlq_url: String,
    pub calls_table: String,
    pub twilio_secret_id: String,
}

/// Creates the queues, the table and the secret (holding the local token).
pub async fn bootstrap(sdk: &SdkConfig, names: StackNames) -> anyhow::Result<Resources> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let status_queue = names.status_queue();
    let dlq_url = sqs
        .create_queue()
        .queue_name(names.status_dlq())
        .attributes(QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECS.to_string())
        .attributes(
            QueueAttributeName::RedriveAllowPolicy,
            json!({"redrivePermission": "byQueue", "sourceQueueArnList": [names.queue_arn(&status_queue)]}).to_string(),
        )
        .send()
        .await?
        .queue_url
        .ok_or_else(|| anyhow::anyhow!("no DLQ url"))?;
    let status_queue_url = sqs
        .create_queue()
        .queue_name(&status_queue)
        .attributes(QueueAttributeName::VisibilityTimeout, STATUS_QUEUE_VISIBILITY_TIMEOUT_SECS.to_string())
        .attributes(QueueAttributeName::MessageRetentionPeriod, STATUS_QUEUE_RETENTION_SECS.to_string())
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": names.queue_arn(&names.status_dlq()), "maxReceiveCount": MAX_RECEIVE_COUNT}).to_string(),
        )
        .send()
        .await?
        .queue_url
        .ok_or_else(|| anyhow::anyhow!("no queue url"))?;

    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    dynamodb
        .create_table()
        .table_name(names.calls_table())
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(SORT_KEY, KeyType::Range)?)
        .attribute_definitions(attribute(PARTITION_KEY)?)
        .attribute_definitions(attribute(SORT_KEY)?)
        .send()
        .await?;

    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    secrets
        .create_secret()
        .name(names.twilio_secret())
        .secret_string(
            json!({"account_sid": local::ACCOUNT_SID, "auth_token": local::AUTH_TOKEN}).to_string(),
        )
        .send()
        .await?;

    Ok(Resources {
        status_queue_url,
        status_dlq_url: dlq_url,
        calls_table: names.calls_table(),
        twilio_secret_id: names.twilio_secret(),
        names,
    })
}
