//! The whole local stack in one value: start it, use it, drop it (everything stops).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use voicectl::media_server::MediaServer;
use voicehooks::config::{self, local};

use crate::deploy::{self, Deployment, Resources};
use crate::emulator::Emulator;
use crate::faults::{FaultPlan, FaultProxy};
use crate::functions::{ACCOUNT_CONCURRENCY, FunctionHost, FunctionSpec};
use crate::gateway::{JwtRoute, LocalIssuer};
use crate::poller::{Poller, PollerConfig};
use crate::schedule::Schedule;
use crate::transcribe_completer::TranscribeCompleter;
use crate::workspace::Workspace;
use anyhow::Context as _;

pub const WEBHOOK_STATUS: &str = "webhook-status";
pub const WEBHOOK_VOICE: &str = "webhook-voice";
pub const STATUS_WORKER: &str = "status-worker";
pub const WEBHOOK_RECORDING: &str = "webhook-recording";
pub const WEBHOOK_TRANSCRIPTION: &str = "webhook-transcription";
pub const RECORDING_WORKER: &str = "recording-worker";
pub const TRANSCRIPT_WORKER: &str = "transcript-worker";
pub const SPILL_DRAINER: &str = "spill-drainer";
pub const WEBHOOK_FALLBACK: &str = "webhook-fallback";
pub const SOFTPHONE_TOKEN: &str = "softphone-token";
pub const RECONCILER: &str = "reconciler";
/// How often the local schedule runs the spill drainer (every minute on AWS).
const SPILL_DRAIN_PERIOD: Duration = Duration::from_secs(2);
/// Shorter than the template's 120 s: a killed instance's batch comes back within the run
/// (a live one finishes well inside it, or settles before it).
const RECORDING_WORKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Retries come back within seconds locally (15 s minimum on AWS).
const LOCAL_RETRY_BASE_SECS: &str = "1";

pub struct StackOptions {
    /// Names the run's log folder under `.local/logs/`.
    pub label: String,
    /// The port of the Lambda APIs (function URLs, Invoke, Runtime); a free one when `None`.
    pub lambda_port: Option<u16>,
    /// `VOICEHOOKS_DELETE_FROM_TWILIO` for the recording worker.
    pub delete_from_twilio: bool,
    /// The `host:port` the recording worker may fetch stand-in media from; `None`: the
    /// stack's own media server. `devstack up` names a fixed one for `voicectl simulate
    /// --serve-media`, which runs in another process.
    pub media_host: Option<String>,
    /// Puts the functions behind a [`FaultProxy`] with this plan (`FaultPlan::default()`:
    /// no faults, only counting what each function asks of AWS).
    pub faults: Option<FaultPlan>,
    /// Runs the release builds of the functions (`make bench`), not the debug ones.
    pub release: bool,
    /// `VOICEHOOKS_SECRET_TTL_SECS` of the functions that read the secret (their default,
    /// 300 s, when `None`).
    pub secret_ttl: Option<Duration>,
    /// Functions' timeouts other than the template's (each invocation's deadline), by
    /// binary; the recording worker's is 30 s unless named here.
    pub timeouts: Vec<(&'static str, Duration)>,
    /// The template to deploy; `infra/template.yaml` when `None`.
    pub template: Option<PathBuf>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            label: "stack".into(),
            lambda_port: None,
            delete_from_twilio: true,
            media_host: None,
            faults: None,
            release: false,
            secret_ttl: None,
            timeouts: Vec::new(),
            template: None,
        }
    }
}

pub struct LocalStack {
    pub workspace: Workspace,
    pub log_dir: PathBuf,
    pub sdk: SdkConfig,
    /// What CloudFormation made of the template.
    pub deployment: Deployment,
    pub resources: Resources,
    pub status_poller: Poller,
    pub recording_poller: Poller,
    pub transcript_poller: Poller,
    pub completer: TranscribeCompleter,
    /// The spill drainer's schedule (EventBridge's, on AWS).
    pub spill_schedule: Schedule,
    /// The stand-in's recording media (Twilio's REST API for `Recordings/{sid}.wav`).
    pub media: MediaServer,
    /// Between the functions and the emulator when the options asked for faults.
    pub proxy: Option<FaultProxy>,
    /// The softphones' identity provider, and API Gateway's JWT authorizer in front of
    /// `POST /softphone/token`.
    pub issuer: std::sync::Arc<LocalIssuer>,
    pub softphone_route: JwtRoute,
    // Dropped in declaration order: pollers, then functions, then the emulator.
    pub functions: FunctionHost,
    pub emulator: Emulator,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let workspace = Workspace::locate();
        let log_dir = workspace.log_dir(&options.label)?;
        let emulator = Emulator::start(&workspace, &log_dir).await?;
        let sdk = emulator.sdk_config().await;
        let template = options
            .template
            .clone()
            .unwrap_or_else(|| workspace.template());
        let deployment = deploy::deploy_local(
            &workspace,
            &emulator,
            &template,
            &deploy::local_parameters(options.delete_from_twilio),
        )
        .await?;
        let resources = deployment.resources()?;
        let media = MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN).await?;
        media.accept_api_key(local::API_KEY_SID, local::API_KEY_SECRET);
        provision_drifted_account(&media);

        let local_env = local_env(&options, &media);
        let mut specs = function_specs(&deployment, &emulator, &local_env, &options);
        let proxy = options
            .faults
            .map(|plan| FaultProxy::new(&emulator.endpoint, plan))
            .transpose()?;
        if let Some(proxy) = &proxy {
            route_through(proxy, &mut specs).await?;
        }
        let functions = FunctionHost::start(
            &workspace,
            &log_dir,
            options.lambda_port,
            specs,
            options.release,
        )
        .await?;
        // Lambda's event source mappings read SQS like anyone: behind the proxy too, so an
        // SQS outage stops them as it would on AWS.
        let poller_sdk = match &proxy {
            Some(proxy) => sdk
                .to_builder()
                .endpoint_url(proxy.listen("event-source-mapping").await?)
                .build(),
            None => sdk.clone(),
        };
        let poller = |function: &str| start_poller(&deployment, &functions, &poller_sdk, function);
        let status_poller = poller(STATUS_WORKER)?;
        let recording_poller = poller(RECORDING_WORKER)?;
        let transcript_poller = poller(TRANSCRIPT_WORKER)?;
        let spill_schedule = Schedule::start(
            &sdk,
            &functions.endpoint(),
            SPILL_DRAINER,
            SPILL_DRAIN_PERIOD,
            ("drained", "left"),
        );
        let issuer = std::sync::Arc::new(LocalIssuer::new()?);
        let softphone_route = jwt_route(&sdk, &deployment, &functions, &issuer).await?;
        let completer = TranscribeCompleter::start(
            &sdk,
            &resources.recordings_bucket,
            &resources.transcript.url,
        );
        Ok(Self {
            workspace,
            log_dir,
            sdk,
            deployment,
            resources,
            status_poller,
            recording_poller,
            transcript_poller,
            completer,
            spill_schedule,
            media,
            proxy,
            issuer,
            softphone_route,
            functions,
            emulator,
        })
    }

    /// The routes API Gateway would have: (public URL prefix, function URL prefix). The local
    /// "Twilio" signs for the first and delivers to the second.
    /// What voicectl needs to work on this stack, as `KEY=value` lines for a shell's
    /// `set -a; . file`: the emulator's endpoint and credentials, the stack's name, its
    /// public base URL and routes.
    pub fn voicectl_env(&self) -> String {
        let routes: Vec<String> = self
            .routes()
            .into_iter()
            .map(|(public, target)| format!("{public}={target}"))
            .collect();
        let operator = self
            .deployment
            .operator()
            .expect("deploy_local makes the operator");
        let mut env = self.emulator.env_as(operator);
        env.extend([
            // The incident rehearsal's break-table and restore-table act as the account's
            // administrator, which voicectl never is.
            (
                "DEVSTACK_ADMIN_ACCESS_KEY_ID".to_owned(),
                self.emulator.admin.access_key_id().to_owned(),
            ),
            (
                "DEVSTACK_ADMIN_SECRET_ACCESS_KEY".to_owned(),
                self.emulator.admin.secret_access_key().to_owned(),
            ),
            ("VOICEHOOKS_STACK".to_owned(), local::STACK_NAME.to_owned()),
            (
                "VOICEHOOKS_PUBLIC_BASE_URL".to_owned(),
                local::PUBLIC_BASE_URL.to_owned(),
            ),
            ("VOICEHOOKS_ROUTES".to_owned(), routes.join(",")),
            // `voicectl numbers` talks to the stand-in's REST API.
            ("TWILIO_API_BASE".to_owned(), self.media.api_base()),
        ]);
        env.iter().map(|(k, v)| format!("{k}='{v}'\n")).collect()
    }

    pub fn routes(&self) -> Vec<(String, String)> {
        let mut routes: Vec<(String, String)> = Vec::new();
        // The template's routes, but the JWT one (its authorizer is `softphone_route`). A
        // route with a path parameter (`/twilio/voice/{step}`) takes what starts with its
        // literal part, which the route before it already covers.
        for route in self.deployment.routes.iter().filter(|r| !r.jwt) {
            let prefix = route.prefix().trim_end_matches('/');
            let public = format!("{}{prefix}", local::PUBLIC_BASE_URL);
            if routes.iter().any(|(p, _)| *p == public) {
                continue;
            }
            let target = format!("{}{prefix}", self.functions.function_url(&route.function));
            routes.push((public, target));
        }
        routes
    }

    /// How the stand-in's softphones sign in on this stack: bearer tokens from the local
    /// issuer, Access Tokens checked with the local API key.
    pub fn softphone_sign_in(&self) -> voicectl::simulate::SoftphoneSignIn {
        let issuer = self.issuer.clone();
        voicectl::simulate::SoftphoneSignIn {
            token_url: self.softphone_token_url(),
            identity_provider: std::sync::Arc::new(move |identity: &str| {
                issuer.bearer(identity, serde_json::json!({}))
            }),
            account_sid: local::ACCOUNT_SID.into(),
            api_key_sid: local::API_KEY_SID.into(),
            api_key_secret: local::API_KEY_SECRET.into(),
            twiml_app_sid: local::TWIML_APP_SID.into(),
            http: reqwest::Client::new(),
        }
    }

    /// The stand-in's REST API with the local account's API key, as voicectl would call it
    /// with the secret's credentials.
    pub fn twilio_rest(&self) -> voicehooks::twilio::rest::RestClient {
        let mut credentials =
            voicehooks::secrets::TwilioCredentials::new(local::ACCOUNT_SID, local::AUTH_TOKEN);
        credentials.api_key_sid = Some(local::API_KEY_SID.into());
        credentials.api_key_secret = Some(local::API_KEY_SECRET.into());
        voicehooks::twilio::rest::RestClient::for_account(
            reqwest::Client::new(),
            &self.media.api_base(),
            &credentials,
        )
    }

    /// Where softphones ask for their Access Tokens (behind the JWT authorizer).
    pub fn softphone_token_url(&self) -> String {
        self.softphone_route.url(voicehooks::softphone::TOKEN_PATH)
    }

    /// Where the local "Twilio" delivers status callbacks (the function URL).
    pub fn status_webhook_target(&self) -> String {
        format!(
            "{}/twilio/status",
            self.functions.function_url(WEBHOOK_STATUS)
        )
    }

    /// The URL Twilio was given, which requests are signed for.
    pub fn status_webhook_public(&self) -> String {
        format!("{}/twilio/status", local::PUBLIC_BASE_URL)
    }

    /// Messages in a queue: visible plus in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> anyhow::Result<u64> {
        queue_depth(&self.sdk, queue_url).await
    }

    /// Events waiting in the spill for the drainer.
    pub async fn spill_depth(&self) -> anyhow::Result<voicehooks::spill::SpillDepth> {
        voicehooks::spill::depth(
            &voicehooks::aws::s3_client(&self.sdk),
            &self.resources.spill_bucket,
        )
        .await
        .map_err(anyhow::Error::msg)
    }

    /// Waits until every work queue is empty and the pollers idle, several checks in a row
    /// (a recording's transcript event comes after its job, so quiet must last a while).
    pub async fn wait_until_drained(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut quiet_checks = 0;
        let sweeps = || self.completer.stats.sweeps.load(Ordering::SeqCst);
        let mut sweeps_at_quiet = sweeps();
        // Quiet for a while, and over two whole sweeps of the Transcribe completer with no
        // job left unfinished: a transcript's event comes only after its job completes.
        while quiet_checks < 8 || sweeps() < sweeps_at_quiet + 2 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the queues did not drain within {timeout:?}"
            );
            let mut quiet = self.status_poller.is_idle()
                && self.recording_poller.is_idle()
                && self.transcript_poller.is_idle();
            for queue in [
                &self.resources.status_queue_url,
                &self.resources.recording.url,
                &self.resources.transcript.url,
            ] {
                quiet = quiet && self.queue_depth(queue).await? == 0;
            }
            // Spilled events are on their way too, until the drainer has re-enqueued them.
            quiet = quiet && self.spill_depth().await?.events == 0;
            quiet = quiet && self.completer.stats.pending.load(Ordering::SeqCst) == 0;
            if !quiet || quiet_checks == 0 {
                sweeps_at_quiet = sweeps();
            }
            quiet_checks = if quiet { quiet_checks + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(())
    }

    /// Stops the poller, the functions and the emulator (dropping does the same).
    pub async fn stop(mut self) {
        self.status_poller.stop().await;
        self.recording_poller.stop().await;
        self.transcript_poller.stop().await;
        self.completer.stop().await;
        self.spill_schedule.stop().await;
        if let Some(proxy) = &self.proxy {
            proxy.stop();
        }
        self.functions.stop();
        self.emulator.stop();
    }
}

/// The stand-in account's numbers (the flows' own) and TwiML App, wired the way accounts
/// moving to us are: one right, the others with each kind of drift `voicectl numbers check`
/// finds, so the demo shows check → apply → check.
fn provision_drifted_account(media: &MediaServer) {
    let right = voicectl::numbers::Expected::for_base(local::PUBLIC_BASE_URL);
    let wired = |voice_url: &str, fallback: &str, status: &str, method: &str| {
        voicectl::twilio_api::Wiring {
            voice_url: voice_url.into(),
            voice_method: method.into(),
            voice_fallback_url: fallback.into(),
            voice_fallback_method: "POST".into(),
            status_callback: status.into(),
            status_callback_method: "POST".into(),
        }
    };
    let old_server = "https://4f2a9c.ngrok-free.app";
    let drifts = [
        wired(
            &right.voice_url,
            &right.voice_fallback_url,
            &right.status_callback,
            "POST",
        ),
        wired(
            &right.voice_url,
            &right.voice_fallback_url,
            &right.status_callback,
            "GET",
        ),
        wired(
            &format!("{old_server}/voice"),
            "",
            &format!("{old_server}/status"),
            "POST",
        ),
        wired(
            right.voice_url.split('#').next().unwrap_or_default(),
            &right.voice_fallback_url,
            &right.status_callback,
            "POST",
        ),
        wired(&right.voice_url, &right.voice_fallback_url, "", "POST"),
    ];
    let flows = voicehooks::flows::Flows::built_in().expect("the built-in flows load");
    let provisioned = media.provisioned();
    for (i, (number, _)) in flows.numbers().enumerate() {
        provisioned.add_number(
            local::ACCOUNT_SID,
            &format!("PN{:032x}", i + 1),
            number,
            &drifts[i % drifts.len()],
        );
    }
    let mut app = wired(&right.voice_url, "", &right.status_callback, "POST");
    app.status_callback_method = "GET".into();
    provisioned.add_application(local::ACCOUNT_SID, local::TWIML_APP_SID, "softphone", &app);
}

/// Messages in a queue: visible plus in flight.
pub async fn queue_depth(sdk: &SdkConfig, queue_url: &str) -> anyhow::Result<u64> {
    let output = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let attributes = output.attributes().cloned().unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

/// What only the local stack adds to a function's deployed environment: the emulator, the
/// stand-in's hosts, and retries and caches compressed into seconds.
fn local_env(options: &StackOptions, media: &MediaServer) -> Vec<(String, String)> {
    let media_host = options
        .media_host
        .clone()
        .unwrap_or_else(|| media.host_port());
    [
        (config::LOCAL_MEDIA_HOST, media_host),
        (config::LOCAL_TWILIO_API, media.api_base()),
        (config::RETRY_BASE_SECS, LOCAL_RETRY_BASE_SECS.to_owned()),
    ]
    .into_iter()
    .chain(
        options
            .secret_ttl
            .map(|ttl| (config::SECRET_TTL_SECS, ttl.as_secs().to_string())),
    )
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Each deployed function as it runs here: its deployed environment, timeout and memory,
/// its role's credentials (as Lambda gives them), the local additions, one instance warm
/// and as many more as requests need, up to its concurrency as Lambda reckons it.
fn function_specs(
    deployment: &Deployment,
    emulator: &Emulator,
    local_env: &[(String, String)],
    options: &StackOptions,
) -> Vec<FunctionSpec> {
    deployment
        .functions
        .iter()
        .map(|function| {
            let mut env: Vec<(String, String)> = function
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(credentials) = &function.credentials {
                env.extend(emulator.env_as(credentials));
            }
            env.extend(local_env.iter().cloned());
            let binary = function.binary.as_str();
            // An SQS mapping invokes at most its MaximumConcurrency at once; reserved
            // concurrency caps every caller.
            let mapped = deployment.mapping(binary).ok().map(|m| m.max_concurrency);
            let concurrency = [function.reserved_concurrency, mapped]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(ACCOUNT_CONCURRENCY);
            FunctionSpec {
                name: function.binary.clone(),
                env,
                instances: 1,
                concurrency,
                timeout: options
                    .timeouts
                    .iter()
                    .find(|(name, _)| *name == binary)
                    .map(|(_, timeout)| *timeout)
                    .unwrap_or(if binary == RECORDING_WORKER {
                        RECORDING_WORKER_TIMEOUT
                    } else {
                        function.timeout
                    }),
                memory_mb: function.memory_mb,
            }
        })
        .collect()
}

/// Points each function at its own listener of the fault proxy instead of the emulator.
async fn route_through(proxy: &FaultProxy, specs: &mut [FunctionSpec]) -> anyhow::Result<()> {
    for spec in specs {
        let endpoint = proxy.listen(&spec.name).await?;
        for (name, value) in &mut spec.env {
            if name == "AWS_ENDPOINT_URL" {
                value.clone_from(&endpoint);
            }
        }
    }
    Ok(())
}

/// A queue's poller as its mapping is configured. A mapping reads its queue with the
/// function's execution role, as Lambda does ("Lambda needs permissions to manage messages in
/// your Amazon SQS queue", the execution role's).
fn start_poller(
    deployment: &Deployment,
    functions: &FunctionHost,
    sdk: &SdkConfig,
    function: &str,
) -> anyhow::Result<Poller> {
    let mapping = deployment.mapping(function)?;
    let timeout = functions
        .timeout(function)
        .with_context(|| format!("{function} is not running"))?;
    let role = deployment
        .function(function)?
        .credentials
        .clone()
        .with_context(|| format!("{function} has no role credentials"))?;
    let as_role = sdk
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(role))
        .build();
    Ok(Poller::start(
        &as_role,
        &functions.endpoint(),
        PollerConfig::from_mapping(mapping, timeout),
    ))
}

/// The template's route behind a JWT authorizer, served with the local issuer playing API
/// Gateway's authorizer.
async fn jwt_route(
    sdk: &SdkConfig,
    deployment: &Deployment,
    functions: &FunctionHost,
    issuer: &std::sync::Arc<LocalIssuer>,
) -> anyhow::Result<JwtRoute> {
    let route = deployment
        .routes
        .iter()
        .find(|r| r.jwt)
        .context("the template has no route behind a JWT authorizer")?;
    JwtRoute::start(
        sdk,
        &functions.endpoint(),
        &route.function,
        &route.path,
        issuer.clone(),
    )
    .await
}
