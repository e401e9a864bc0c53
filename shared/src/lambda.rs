//! The seam between Lambda event shapes and the domain: every function's `main.rs` uses
//! these so handlers stay one line.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::calls::DynamoCallStore;
use crate::calls::worker::StatusWorker;
use crate::config::{
    RecordingWorkerConfig, SoftphoneTokenConfig, SpillDrainerConfig, StatusWorkerConfig,
    TranscriptWorkerConfig, VerifierConfig, WebhookConfig,
};
use crate::queue::SqsEventQueue;
use crate::recording::DynamoRecordingStore;
use crate::recording::media::MediaHosts;
use crate::recording::{ArchiveSettings, RecordingWorker, default_fetch_backoff, media_client};
use crate::secrets::SecretsManagerTokens;
use crate::softphone::TokenIssuer;
use crate::spill::{Deadlines, S3Spill, SpillDrainer};
use crate::stack_names::WorkQueue;
use crate::transcribe::{Transcriber, TranscriptWorker};
use crate::webhook::{Acknowledger, Reply, Verifier, WebhookRequest};
use crate::worker::{BatchWorker, QueuedMessage, Settler, work_off};

/// The signature check on AWS: tokens from Secrets Manager, cached across invocations.
pub fn aws_verifier(
    config: &VerifierConfig,
    aws: &aws_config::SdkConfig,
) -> Verifier<SecretsManagerTokens> {
    Verifier::new(
        config.public_base_url.clone(),
        request_path_tokens(
            aws,
            &config.secret_id,
            config.secret_ttl,
            config.secret_max_staleness,
        ),
    )
}

/// The Twilio secret as a function that answers a waiting client reads it: cached, each
/// read bounded by [`TOKEN_READ_DEADLINE`], the last good value used up to `max_staleness`.
fn request_path_tokens(
    aws: &aws_config::SdkConfig,
    secret_id: &str,
    ttl: std::time::Duration,
    max_staleness: std::time::Duration,
) -> SecretsManagerTokens {
    SecretsManagerTokens::new(
        crate::aws::ack_secrets_client(aws, TOKEN_READ_DEADLINE),
        secret_id,
        ttl,
    )
    .with_max_staleness(max_staleness)
}

/// The softphone token issuer on AWS: the API key from Secrets Manager, cached across
/// invocations. Called once per cold start.
pub fn aws_token_issuer(
    config: &SoftphoneTokenConfig,
    aws: &aws_config::SdkConfig,
) -> TokenIssuer<SecretsManagerTokens> {
    TokenIssuer::new(
        request_path_tokens(
            aws,
            &config.secret_id,
            config.secret_ttl,
            config.secret_max_staleness,
        ),
        config.settings.clone(),
    )
}

/// The scheduled reconciler on AWS: clients built once per cold start; the account's
/// credentials read (cached) at each run, so a rotated key is picked up.
pub struct AwsReconciler {
    tokens: SecretsManagerTokens,
    http: reqwest::Client,
    calls: DynamoCallStore,
    recordings: DynamoRecordingStore,
    status_queue: SqsEventQueue,
    recording_queue: SqsEventQueue,
    config: crate::config::ReconcilerConfig,
}

impl AwsReconciler {
    pub fn new(config: &crate::config::ReconcilerConfig, aws: &aws_config::SdkConfig) -> Self {
        let dynamodb = crate::aws::dynamodb_client(aws);
        let sqs = crate::aws::sqs_client(aws);
        Self {
            tokens: SecretsManagerTokens::new(
                crate::aws::secrets_client(aws),
                config.secret_id.clone(),
                config.secret_ttl,
            ),
            http: reqwest::Client::new(),
            calls: DynamoCallStore::new(dynamodb.clone(), &config.calls_table),
            recordings: DynamoRecordingStore::new(dynamodb, &config.calls_table),
            status_queue: SqsEventQueue::new(sqs.clone(), config.status_queue_url.clone()),
            recording_queue: SqsEventQueue::new(sqs, config.recording_queue_url.clone()),
            config: config.clone(),
        }
    }

    /// One run over the configured window, ending now.
    pub async fn run(&self) -> Result<crate::reconcile::ReconcileReport, lambda_http::Error> {
        use crate::secrets::AuthTokens;
        let credentials = self.tokens.current().await?;
        let twilio = crate::twilio::rest::RestClient::for_account(
            self.http.clone(),
            &self.config.api_base,
            &credentials,
        );
        let report = crate::reconcile::Reconciler {
            twilio: &twilio,
            calls: &self.calls,
            recordings: &self.recordings,
            status_queue: &self.status_queue,
            recording_queue: &self.recording_queue,
        }
        .run(time::OffsetDateTime::now_utc() - self.config.window)
        .await?;
        tracing::info!(
            calls_listed = report.calls_listed,
            recordings_listed = report.recordings_listed,
            statuses_repaired = report.statuses_repaired.len(),
            recordings_queued = report.recordings_queued.len(),
            "reconciled with Twilio"
        );
        Ok(report)
    }
}

/// The claims API Gateway's JWT authorizer passed on (`requestContext.authorizer.jwt`), as
/// strings, the way HTTP APIs give them; `None` when no JWT authorizer ran.
pub fn jwt_claims(req: &Request) -> Option<&std::collections::HashMap<String, String>> {
    match req.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(context) => context
            .authorizer
            .as_ref()?
            .jwt
            .as_ref()
            .map(|jwt| &jwt.claims),
        _ => None,
    }
}

/// The webhook checks on AWS: the configured queue, the spill beside it, tokens from Secrets
/// Manager. Called once per cold start, so clients and the token cache live across
/// invocations. `deadlines` bound each store (the voice webhook's are shorter: a caller waits).
pub fn aws_acknowledger(
    config: &WebhookConfig,
    aws: &aws_config::SdkConfig,
    deadlines: Deadlines,
) -> Acknowledger<SqsEventQueue, SecretsManagerTokens, S3Spill> {
    // Each client may take the whole of it: the queue keeps going beside the spill once it
    // is slow (`spill::make_durable`), which bounds each store's turn itself.
    Acknowledger::verified_by(
        aws_verifier(&config.verifier, aws),
        SqsEventQueue::new(
            crate::aws::ack_sqs_client(aws, deadlines.total),
            config.queue_url.clone(),
        ),
    )
    .with_spill(S3Spill::new(
        crate::aws::ack_s3_client(aws, deadlines.total),
        config.spill_bucket.clone(),
    ))
    .with_deadlines(deadlines)
}

/// The longest a webhook waits for Secrets Manager when it has no token cached (a cold
/// start): then it answers 503, well inside the `rt` its URL gives Twilio.
pub const TOKEN_READ_DEADLINE: std::time::Duration = std::time::Duration::from_millis(1500);

/// The spill drainer on AWS: requests spilled unverified are checked as the webhooks check
/// them, with the token from Secrets Manager. Called once per cold start.
pub fn aws_spill_drainer(
    config: &SpillDrainerConfig,
    aws: &aws_config::SdkConfig,
) -> SpillDrainer<SqsEventQueue, Verifier<SecretsManagerTokens>> {
    let sqs = crate::aws::sqs_client(aws);
    let queue = |url: &str| SqsEventQueue::new(sqs.clone(), url);
    SpillDrainer {
        verifier: aws_verifier(&config.verifier, aws),
        s3: crate::aws::s3_client(aws),
        bucket: config.spill_bucket.clone(),
        queues: vec![
            (WorkQueue::Status, queue(&config.status_queue_url)),
            (WorkQueue::Recording, queue(&config.recording_queue_url)),
            (WorkQueue::Transcript, queue(&config.transcript_queue_url)),
        ],
    }
}

/// The status worker on AWS, and how it settles messages. Called once per cold start.
pub fn aws_status_worker(
    config: &StatusWorkerConfig,
    aws: &aws_config::SdkConfig,
) -> (StatusWorker<DynamoCallStore>, Settler) {
    let store = DynamoCallStore::new(crate::aws::dynamodb_client(aws), &config.calls_table);
    let settler = Settler::new(crate::aws::sqs_client(aws), &config.queue, "status-worker");
    (StatusWorker::new(store), settler)
}

/// The recording worker on AWS, and how it settles messages. Called once per cold start.
pub fn aws_recording_worker(
    config: &RecordingWorkerConfig,
    aws: &aws_config::SdkConfig,
) -> (RecordingWorker<SecretsManagerTokens>, Settler) {
    let hosts = match &config.local_media_host {
        Some(host) => MediaHosts::with_local(host),
        None => MediaHosts::twilio(),
    };
    let worker = RecordingWorker {
        http: media_client(&hosts),
        hosts,
        tokens: SecretsManagerTokens::new(
            crate::aws::secrets_client(aws),
            config.secret_id.clone(),
            config.secret_ttl,
        ),
        s3: crate::aws::s3_client(aws),
        store: DynamoRecordingStore::new(crate::aws::dynamodb_client(aws), &config.calls_table),
        transcriber: config.transcribe.then(|| {
            Transcriber::new(
                crate::aws::transcribe_client(aws),
                &config.language,
                config.redact_pii,
            )
        }),
        settings: ArchiveSettings::from(config),
        fetch_backoff: default_fetch_backoff(),
        pace: Default::default(),
    };
    let settler = Settler::new(
        crate::aws::sqs_client(aws),
        &config.queue,
        "recording-worker",
    );
    (worker, settler)
}

/// The transcript worker on AWS, and how it settles messages. Called once per cold start.
pub fn aws_transcript_worker(
    config: &TranscriptWorkerConfig,
    aws: &aws_config::SdkConfig,
) -> (TranscriptWorker, Settler) {
    let worker = TranscriptWorker {
        // Only reads jobs: the language and redaction settings do not apply.
        transcriber: Transcriber::new(crate::aws::transcribe_client(aws), "en-US", false),
        s3: crate::aws::s3_client(aws),
        store: DynamoRecordingStore::new(crate::aws::dynamodb_client(aws), &config.calls_table),
        bucket: config.bucket.clone(),
        pace: Default::default(),
    };
    let settler = Settler::new(
        crate::aws::sqs_client(aws),
        &config.queue,
        "transcript-worker",
    );
    (worker, settler)
}

/// How long a function invocation may still take: Lambda's deadline less a margin for
/// settling what it did (answering, reporting a partial batch), as an `Instant`.
pub fn deadline(context: &lambda_http::Context) -> std::time::Instant {
    let left = context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::time::Instant::now() + left.saturating_sub(SETTLE_MARGIN)
}

/// Kept free before Lambda's deadline for settling: a few SQS calls and the response.
pub const SETTLE_MARGIN: std::time::Duration = std::time::Duration::from_millis(1500);

/// Views an API Gateway (HTTP API v2) or function-URL request as a [`WebhookRequest`].
/// The path is `rawPath` as API Gateway reports it, never the rewritten request URI.
pub fn webhook_request(req: &Request) -> WebhookRequest<'_> {
    WebhookRequest {
        method: req.method(),
        headers: req.headers(),
        raw_path: req.raw_http_path(),
        raw_query: req.uri().query().unwrap_or_default(),
        body: req.body().as_ref(),
    }
}

pub fn http_response(reply: Reply) -> Response<Body> {
    let mut response = Response::builder().status(reply.status);
    if let Some(content_type) = reply.content_type {
        response = response.header("content-type", content_type);
    }
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    let body = if reply.body.is_empty() {
        Body::Empty
    } else {
        Body::Text(reply.body)
    };
    response
        .body(body)
        .expect("status and static headers are always valid")
}

/// One SQS batch through a worker: its messages decided before the invocation's deadline,
/// settled, and the partial batch response.
pub async fn sqs_batch<W: BatchWorker>(
    worker: &W,
    settler: &Settler,
    event: &lambda_http::LambdaEvent<SqsEvent>,
) -> SqsBatchResponse {
    let messages = queued_messages(&event.payload);
    let failed = work_off(worker, settler, &messages, deadline(&event.context)).await;
    batch_response(failed)
}

/// The messages of an SQS event, as the worker logic reads them.
pub fn queued_messages(event: &SqsEvent) -> Vec<QueuedMessage<'_>> {
    event
        .records
        .iter()
        .map(|record| {
            let attribute = |name: &str| {
                record
                    .message_attributes
                    .get(name)
                    .and_then(|a| a.string_value.as_deref())
            };
            let number = |value: Option<&str>| value.and_then(|v| v.parse::<u64>().ok());
            QueuedMessage {
                message_id: record.message_id.as_deref().unwrap_or_default(),
                body: record.body.as_deref().unwrap_or_default(),
                receipt_handle: record.receipt_handle.as_deref().unwrap_or_default(),
                receive_count: number(
                    record
                        .attributes
                        .get("ApproximateReceiveCount")
                        .map(String::as_str),
                )
                .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                redrive_run: attribute(crate::queue::dead_letter::REDRIVE_RUN),
                first_sent_ms: number(attribute(crate::queue::resent::FIRST_SENT_AT))
                    .or_else(|| number(record.attributes.get("SentTimestamp").map(String::as_str))),
                handed_back: number(attribute(crate::queue::resent::HANDED_BACK))
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            }
        })
        .collect()
}

/// The partial batch response that makes SQS retry only `failed` message ids.
pub fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
