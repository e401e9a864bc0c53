//! The AWS SDK configuration every function and tool shares. Built once per cold start.
//! `AWS_ENDPOINT_URL` (read by the SDK itself) points every client at the local emulator.

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Loads the shared SDK config with timeouts well inside Twilio's 15 s webhook budget.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
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

/// The HTTPS client every SDK client shares: hyper and rustls over ring, the one crypto
/// library the binaries link (the SDK's default client would add aws-lc-rs). One client
/// per process, so every SDK client reuses its pooled connections.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An SDK error in one line, for logs and a dead letter's `failure_reason`: the service's
/// error code and message, else the error and its causes. (`DisplayErrorContext` ends with the
/// error's `Debug`, the raw response with its headers, which buries the reason.)
pub fn error_summary<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(service) = e.as_service_error()
        && let Some(code) = service.code()
    {
        return match service.message() {
            Some(message) => format!("{code}: {message}"),
            None => code.to_owned(),
        };
    }
    crate::error_chain(e)
}

/// The S3 client: path-style addressing when an endpoint is configured (the local emulator,
/// like every S3-compatible store on a bare host:port, cannot serve `bucket.host` names).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint = sdk.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(custom_endpoint)
            .interceptor(CallMetrics)
            .build(),
    )
}

/// A client whose every operation ends within `within`: a failed attempt (a 5xx, a reset
/// connection) is retried by the SDK's standard mode with jittered exponential backoff from
/// 50 ms, and a slow one may take all of `within` rather than be cut short and started again
/// (under load, and once the SDK's retry quota is spent, a short attempt timeout would turn a
/// slow store into a failed one). What a webhook uses on its acknowledge path, where a store
/// must give way to the next one before Twilio's read timeout.
fn ack_path<B>(builder: B, within: Duration) -> B
where
    B: AckPathConfig,
{
    builder
        .retry(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_millis(400)),
        )
        .timeouts(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(400).min(within))
                .operation_attempt_timeout(within)
                .operation_timeout(within)
                .build(),
        )
}

/// The two settings [`ack_path`] changes, on each service's config builder.
trait AckPathConfig: Sized {
    fn retry(self, retry: aws_config::retry::RetryConfig) -> Self;
    fn timeouts(self, timeouts: TimeoutConfig) -> Self;
}

macro_rules! ack_path_config {
    ($($builder:ty),*) => {$(
        impl AckPathConfig for $builder {
            fn retry(self, retry: aws_config::retry::RetryConfig) -> Self {
                self.retry_config(retry)
            }
            fn timeouts(self, timeouts: TimeoutConfig) -> Self {
                self.timeout_config(timeouts)
            }
        }
    )*};
}
ack_path_config!(
    aws_sdk_sqs::config::Builder,
    aws_sdk_s3::config::Builder,
    aws_sdk_secretsmanager::config::Builder
);

/// The SQS client a webhook enqueues with: done within `within` (beside the spill once slow).
pub fn ack_sqs_client(sdk: &aws_config::SdkConfig, within: Duration) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        ack_path(aws_sdk_sqs::config::Builder::from(sdk), within)
            .interceptor(CallMetrics)
            .build(),
    )
}

/// The S3 client a webhook spills with (path style against a local endpoint, as
/// [`s3_client`]).
pub fn ack_s3_client(sdk: &aws_config::SdkConfig, within: Duration) -> aws_sdk_s3::Client {
    let custom_endpoint = sdk.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        ack_path(aws_sdk_s3::config::Builder::from(sdk), within)
            .force_path_style(custom_endpoint)
            .interceptor(CallMetrics)
            .build(),
    )
}

/// The Secrets Manager client a webhook reads its token with: a cold start that cannot read
/// it answers 503 within `within` instead of waiting out the SDK's defaults.
pub fn ack_secrets_client(
    sdk: &aws_config::SdkConfig,
    within: Duration,
) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        ack_path(aws_sdk_secretsmanager::config::Builder::from(sdk), within)
            .interceptor(CallMetrics)
            .build(),
    )
}

pub fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .interceptor(CallMetrics)
            .build(),
    )
}

pub fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(CallMetrics)
            .build(),
    )
}

pub fn secrets_client(sdk: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(sdk)
            .interceptor(CallMetrics)
            .build(),
    )
}

pub fn transcribe_client(sdk: &aws_config::SdkConfig) -> aws_sdk_transcribe::Client {
    aws_sdk_transcribe::Client::from_conf(
        aws_sdk_transcribe::config::Builder::from(sdk)
            .interceptor(CallMetrics)
            .build(),
    )
}

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// `Service.Operation` of the request an interceptor sees (`Secrets Manager.GetSecretValue`).
fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<Metadata>().map_or_else(
        || "unknown".to_owned(),
        |m| format!("{}.{}", m.service(), m.name()),
    )
}

/// The metric every SDK request of a function counts under: `Aws.<Service>.<Operation>`,
/// e.g. `Aws.SecretsManager.GetSecretValue`, retries included. With the invocation's other
/// metrics, it gives AWS calls per event in production as `make bench` measures them.
pub const CALL_METRIC_PREFIX: &str = "Aws.";

/// The metric for how long AWS took to answer each request (from the request sent to the
/// response's head): the share of a webhook's ack spent waiting on AWS.
pub const CALL_LATENCY_METRIC: &str = "AwsCallLatency";

/// Puts every request its clients send into the invocation's EMF metrics (see
/// [`CALL_METRIC_PREFIX`], [`CALL_LATENCY_METRIC`]). Every client the functions build has it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMetrics;

/// When the request in this attempt's config bag went out.
#[derive(Debug, Clone)]
struct SentAt(Instant);

impl Storable for SentAt {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallMetrics {
    fn name(&self) -> &'static str {
        "CallMetrics"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let metric = format!("{CALL_METRIC_PREFIX}{}", operation(cfg).replace(' ', ""));
        crate::metrics::count(interned(metric), 1);
        cfg.interceptor_state().store_put(SentAt(Instant::now()));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(SentAt(sent)) = cfg.load::<SentAt>() {
            crate::metrics::millis(CALL_LATENCY_METRIC, sent.elapsed().as_micros() as u64);
        }
        Ok(())
    }
}

/// A metric name that lives as long as the process. The metrics take `&'static str`
/// names; a function calls a handful of operations, so each name is leaked once.
fn interned(name: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match names.get(name.as_str()) {
        Some(known) => known,
        None => {
            let leaked: &'static str = Box::leak(name.into_boxed_str());
            names.insert(leaked);
            leaked
        }
    }
}

/// Counts the HTTP requests an SDK client sends, by `Service.Operation`, retries included:
/// how the project measures AWS calls per event instead of inferring them.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// Requests sent so far, by `Service.Operation`.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn count(&self, operation: &str) -> u64 {
        self.snapshot().get(operation).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(operation(cfg)).or_default() += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::error_summary;
    use aws_sdk_dynamodb::error::{ErrorMetadata, SdkError};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;

    #[test]
    fn a_service_error_is_its_code_and_message_without_the_raw_response() {
        let err = UpdateItemError::ResourceNotFoundException(
            ResourceNotFoundException::builder()
                .message("Requested resource not found")
                .meta(
                    ErrorMetadata::builder()
                        .code("ResourceNotFoundException")
                        .message("Requested resource not found")
                        .build(),
                )
                .build(),
        );
        let raw = HttpResponse::new(400.try_into().unwrap(), SdkBody::from("{}"));
        let e: SdkError<UpdateItemError, HttpResponse> = SdkError::service_error(err, raw);
        assert_eq!(
            error_summary(&e),
            "ResourceNotFoundException: Requested resource not found"
        );
    }

    #[test]
    fn a_transport_failure_lists_its_causes() {
        let e: SdkError<UpdateItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        let summary = error_summary(&e);
        assert!(summary.starts_with("dispatch failure"), "{summary}");
        assert!(summary.contains("connection refused"), "{summary}");
        assert!(
            !summary.contains("ConnectorError"),
            "no Debug dump: {summary}"
        );
    }
}
