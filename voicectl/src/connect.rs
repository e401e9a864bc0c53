//! A stack as `voicectl` sees it: found by name (the template's naming), reached with the
//! usual AWS credentials. `AWS_ENDPOINT_URL` points it at the local stack instead; `make up`
//! writes that into `.local/stack.env`, which the Makefile's verbs load.

use std::sync::Arc;
use std::time::Duration;

use voicehooks::calls::DynamoCallStore;
use voicehooks::recording::DynamoRecordingStore;
use voicehooks::secrets::{AuthTokens, SecretsManagerTokens, TwilioCredentials};
use voicehooks::stack_names::{StackNames, WorkQueue};

/// The name `sam deploy` is given in docs/OPERATIONS.md.
pub const DEFAULT_STACK: &str = "voicehooks";

pub struct Stack {
    pub names: StackNames,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub s3: aws_sdk_s3::Client,
    /// Names the account, whose id is in the spill bucket's name.
    pub sts: aws_sdk_sts::Client,
    /// Reads what the deployed webhooks check signatures against.
    pub lambda: aws_sdk_lambda::Client,
}

/// The public base URL a stack's webhooks rebuild each request's URL from, and where it was
/// read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicBase {
    pub url: String,
    pub source: String,
}

impl PublicBase {
    /// `VOICEHOOKS_PUBLIC_BASE_URL`, when set.
    pub fn from_env() -> Option<Self> {
        std::env::var(voicehooks::config::PUBLIC_BASE_URL)
            .ok()
            .filter(|url| !url.is_empty())
            .map(|url| Self {
                url,
                source: voicehooks::config::PUBLIC_BASE_URL.to_owned(),
            })
    }
}

/// Names the spill bucket when the account's id cannot be asked for (`SpillBucketName`).
pub const SPILL_BUCKET_ENV: &str = "VOICEHOOKS_SPILL_BUCKET";

/// One of the stack's work queues with its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queues {
    pub pipeline: WorkQueue,
    pub queue_url: String,
    pub dlq_url: String,
    pub dlq_name: String,
}

impl Stack {
    pub async fn connect(stack: &str) -> Self {
        Self::with_config(stack, &voicehooks::aws::sdk_config().await)
    }

    /// The stack named `stack`, reached with `sdk` (the local emulator's, say).
    pub fn with_config(stack: &str, sdk: &aws_config::SdkConfig) -> Self {
        Self {
            names: StackNames::new(stack),
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            s3: voicehooks::aws::s3_client(sdk),
            sts: aws_sdk_sts::Client::new(sdk),
            lambda: aws_sdk_lambda::Client::new(sdk),
        }
    }

    /// What the stack's status webhook checks signatures against: its deployed environment
    /// (`lambda:GetFunctionConfiguration`), else `VOICEHOOKS_PUBLIC_BASE_URL` (the local
    /// stack's, from `.local/stack.env`); `None` when neither can be had.
    pub async fn public_base_url(&self) -> Option<PublicBase> {
        let function = self.names.function("webhook-status");
        let deployed = self
            .lambda
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .ok()
            .and_then(|c| {
                c.environment()?
                    .variables()?
                    .get(voicehooks::config::PUBLIC_BASE_URL)
                    .cloned()
            });
        match deployed {
            Some(url) => Some(PublicBase {
                url,
                source: format!("{function}'s environment"),
            }),
            None => PublicBase::from_env(),
        }
    }

    /// The stack's spill bucket (`<stack>-spill-<account>`, the template's name), or
    /// `VOICEHOOKS_SPILL_BUCKET`. The account comes from `sts:GetCallerIdentity`, which needs
    /// no permission.
    pub async fn spill_bucket(&self) -> anyhow::Result<String> {
        if let Ok(bucket) = std::env::var(SPILL_BUCKET_ENV) {
            return Ok(bucket);
        }
        let identity = self.sts.get_caller_identity().send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot tell the account (STS: {}); set {SPILL_BUCKET_ENV} to the stack's \
                 SpillBucketName output",
                voicehooks::aws::error_summary(&e)
            )
        })?;
        let account = identity
            .account()
            .ok_or_else(|| anyhow::anyhow!("STS named no account"))?;
        Ok(self.names.spill_bucket(account))
    }

    pub async fn queue_url(&self, name: &str) -> anyhow::Result<String> {
        let output = self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "queue {name} not found ({}): is the stack name right (--stack / \
                     VOICEHOOKS_STACK), and are the credentials and region the stack's?",
                    voicehooks::aws::error_summary(&e)
                )
            })?;
        output
            .queue_url
            .ok_or_else(|| anyhow::anyhow!("SQS returned no URL for {name}"))
    }

    pub async fn queues(&self, pipeline: WorkQueue) -> anyhow::Result<Queues> {
        let dlq_name = self.names.dead_letter_queue(pipeline);
        Ok(Queues {
            pipeline,
            queue_url: self.queue_url(&self.names.queue(pipeline)).await?,
            dlq_url: self.queue_url(&dlq_name).await?,
            dlq_name,
        })
    }

    pub fn calls(&self) -> DynamoCallStore {
        DynamoCallStore::new(self.dynamodb.clone(), self.names.calls_table())
    }

    pub fn recordings(&self) -> DynamoRecordingStore {
        DynamoRecordingStore::new(self.dynamodb.clone(), self.names.calls_table())
    }

    /// The Twilio credentials in the stack's secret, read as the functions read them and
    /// labelled by stage: AWSCURRENT, then AWSPREVIOUS when a rotation left one.
    pub async fn credentials(&self) -> anyhow::Result<Vec<(&'static str, Arc<TwilioCredentials>)>> {
        let tokens = self.tokens();
        let mut found = vec![("AWSCURRENT", tokens.current().await?)];
        found.extend(tokens.previous().await?.map(|p| ("AWSPREVIOUS", p)));
        Ok(found)
    }

    /// The secret's current credentials (AWSCURRENT only: what signing needs).
    pub async fn current_credentials(&self) -> anyhow::Result<Arc<TwilioCredentials>> {
        Ok(self.tokens().current().await?)
    }

    /// The token to sign with: `explicit` (from `TWILIO_AUTH_TOKEN`) or the secret's current.
    pub async fn signing_token(&self, explicit: Option<String>) -> anyhow::Result<String> {
        match explicit {
            Some(token) => Ok(token),
            None => Ok(self.current_credentials().await?.auth_token.clone()),
        }
    }

    fn tokens(&self) -> SecretsManagerTokens {
        SecretsManagerTokens::new(
            self.secrets.clone(),
            self.names.twilio_secret(),
            Duration::from_secs(300),
        )
    }
}
