//! The stack's resources, created in the emulator with the names and keys that
//! `infra/template.yaml` declares for a stack named [`local::STACK_NAME`]
//! (`tests/infra_agreement.rs` checks that the two agree).

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_s3::types::{
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use shared::config::local;
use shared::store::{PARTITION_KEY, SORT_KEY};

use crate::emulator::{ACCOUNT_ID, REGION};

/// As the template: each queue's `VisibilityTimeout` is six times its worker's timeout.
pub const STATUS_QUEUE_VISIBILITY_TIMEOUT_SECS: u32 = 60;
pub const STATUS_WORKER_TIMEOUT_SECS: u32 = 10;
pub const RECORDING_QUEUE_VISIBILITY_TIMEOUT_SECS: u32 = 720;
pub const RECORDING_WORKER_TIMEOUT_SECS: u32 = 120;
pub const TRANSCRIPT_QUEUE_VISIBILITY_TIMEOUT_SECS: u32 = 180;
pub const TRANSCRIPT_WORKER_TIMEOUT_SECS: u32 = 30;
/// As the template's `MaxReceiveCount` default.
pub const MAX_RECEIVE_COUNT: u32 = 5;
pub const STATUS_QUEUE_RETENTION_SECS: u32 = 345_600;
pub const DLQ_RETENTION_SECS: u32 = 1_209_600;

pub use shared::stack::StackNames;

/// A queue's ARN in the emulator's account and region.
pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// A work queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub name: String,
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

/// What the bootstrap created.
#[derive(Debug, Clone)]
pub struct Resources {
    pub names: StackNames,
    pub status_queue_url: String,
    pub status_dlq_url: String,
    pub recording: QueuePair,
    pub transcript: QueuePair,
    pub calls_table: String,
    pub twilio_secret_id: String,
    pub recordings_bucket: String,
    /// Where webhooks spill what SQS did not take: private, SSE-S3 (as the template).
    pub spill_bucket: String,
    /// Locally a name only: moto records the key id on objects without checking it; on AWS
    /// the template's key encrypts the bucket.
    pub recordings_kms_key: String,
}

async fn queue_pair(
    sqs: &aws_sdk_sqs::Client,
    (name, dlq): (String, String),
    visibility_timeout_secs: u32,
) -> anyhow::Result<QueuePair> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(&dlq)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECS.to_string(),
        )
        .attributes(
            QueueAttributeName::RedriveAllowPolicy,
            json!({"redrivePermission": "byQueue", "sourceQueueArnList": [queue_arn(&name)]})
                .to_string(),
        )
        .send()
        .await?
        .queue_url
        .ok_or_else(|| anyhow::anyhow!("no DLQ url"))?;
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_secs.to_string(),
        )
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            STATUS_QUEUE_RETENTION_SECS.to_string(),
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": queue_arn(&dlq), "maxReceiveCount": MAX_RECEIVE_COUNT})
                .to_string(),
        )
        .send()
        .await?
        .queue_url
        .ok_or_else(|| anyhow::anyhow!("no queue url"))?;
    Ok(QueuePair {
        arn: queue_arn(&name),
        name,
        url,
        dlq_url,
    })
}

/// Creates the queues, the table and the secret (holding the local token).
pub async fn bootstrap(sdk: &SdkConfig, names: StackNames) -> anyhow::Result<Resources> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let status = queue_pair(
        &sqs,
        (names.status_queue(), names.status_dlq()),
        STATUS_QUEUE_VISIBILITY_TIMEOUT_SECS,
    )
    .await?;
    let recording = queue_pair(
        &sqs,
        (names.recording_queue(), names.recording_dlq()),
        RECORDING_QUEUE_VISIBILITY_TIMEOUT_SECS,
    )
    .await?;
    let transcript = queue_pair(
        &sqs,
        (names.transcript_queue(), names.transcript_dlq()),
        TRANSCRIPT_QUEUE_VISIBILITY_TIMEOUT_SECS,
    )
    .await?;

    // The bucket as the template has it: private, encrypted by default.
    let s3 = shared::aws::s3_client(sdk);
    let bucket = names.recordings_bucket(ACCOUNT_ID);
    let kms_key = format!(
        "arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/{}-recordings",
        names.stack
    );
    private_bucket(&s3, &bucket, Some(&kms_key)).await?;
    // The spill's own keys (SSE-S3), as the template: it must outlive a KMS outage.
    let spill = names.spill_bucket(ACCOUNT_ID);
    private_bucket(&s3, &spill, None).await?;

    create_calls_table(sdk, &names.calls_table()).await?;

    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    secrets
        .create_secret()
        .name(names.twilio_secret())
        .secret_string(
            json!({
                "account_sid": local::ACCOUNT_SID,
                "auth_token": local::AUTH_TOKEN,
                "api_key_sid": local::API_KEY_SID,
                "api_key_secret": local::API_KEY_SECRET,
                "twiml_app_sid": local::TWIML_APP_SID,
            })
            .to_string(),
        )
        .send()
        .await?;

    Ok(Resources {
        status_queue_url: status.url,
        status_dlq_url: status.dlq_url,
        recording,
        transcript,
        recordings_bucket: bucket,
        spill_bucket: spill,
        recordings_kms_key: kms_key,
        calls_table: names.calls_table(),
        twilio_secret_id: names.twilio_secret(),
        names,
    })
}

/// A bucket as the template's: public access blocked, encrypted by default with `kms_key`
/// (SSE-KMS, bucket key on) or with S3's own keys (SSE-S3).
async fn private_bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    kms_key: Option<&str>,
) -> anyhow::Result<()> {
    s3.create_bucket().bucket(bucket).send().await?;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .block_public_policy(true)
                .ignore_public_acls(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await?;
    let default = match kms_key {
        Some(key) => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(key),
        None => {
            ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256)
        }
    };
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(default.build()?)
                        .bucket_key_enabled(kms_key.is_some())
                        .build(),
                )
                .build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// The calls table, keyed as the template declares.
pub async fn create_calls_table(sdk: &SdkConfig, table: &str) -> anyhow::Result<()> {
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
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PARTITION_KEY, KeyType::Hash)?)
        .key_schema(key(SORT_KEY, KeyType::Range)?)
        .attribute_definitions(attribute(PARTITION_KEY)?)
        .attribute_definitions(attribute(SORT_KEY)?)
        .send()
        .await?;
    Ok(())
}
