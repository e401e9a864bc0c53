//! Helpers the integration tests share. Every test starts what it needs (the emulator, or
//! the whole local stack) on free loopback ports and stops it when its value drops, even
//! when the test fails. Run through `make test`, which builds the function binaries first.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use devstack::deploy::{self, Resources};
use devstack::emulator::Emulator;
use devstack::workspace::Workspace;
use voicehooks::calls::StatusEvent;
use voicehooks::config::local;
use voicehooks::events::Envelope;
use voicehooks::twilio::signature::compute_signature;
use voicehooks::twilio::{CallStatus, Params, StatusCallback};

/// The emulator alone, with the template deployed on it (no functions running).
pub struct Aws {
    /// As the account's administrator.
    pub sdk: SdkConfig,
    pub resources: Resources,
    pub deployment: deploy::Deployment,
    pub emulator: Emulator,
}

impl Aws {
    /// What voicectl needs to reach the emulator as the stack's operator (`OperatorPolicy`).
    pub fn operator_env(&self) -> Vec<(String, String)> {
        self.emulator
            .env_as(self.deployment.operator().expect("an operator"))
    }
}

pub async fn aws(label: &str) -> Aws {
    let workspace = Workspace::locate();
    let log_dir = workspace.log_dir(label).expect("log folder");
    let emulator = Emulator::start(&workspace, &log_dir)
        .await
        .expect("the emulator starts (run `make venv`)");
    let sdk = emulator.sdk_config().await;
    let deployment = deploy::deploy_local(
        &workspace,
        &emulator,
        &workspace.template(),
        &deploy::local_parameters(true),
    )
    .await
    .expect("the template deploys");
    let resources = deployment.resources().expect("the stack's resources");
    Aws {
        sdk,
        resources,
        deployment,
        emulator,
    }
}

pub fn call_sid(n: u32) -> String {
    format!("CA{n:032x}")
}

/// A status callback's params as Twilio sends them (the fields the pipeline reads).
pub fn status_params(call_sid: &str, status: CallStatus, seq: Option<u32>) -> Params {
    let mut params = vec![
        ("AccountSid".to_owned(), local::ACCOUNT_SID.to_owned()),
        ("CallSid".to_owned(), call_sid.to_owned()),
        ("CallStatus".to_owned(), status.as_str().to_owned()),
        ("From".to_owned(), "+14155550100".to_owned()),
        ("To".to_owned(), "+16285550123".to_owned()),
        ("Direction".to_owned(), "outbound-api".to_owned()),
        ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
    ];
    if let Some(seq) = seq {
        params.push(("SequenceNumber".to_owned(), seq.to_string()));
    }
    Params::new(params)
}

pub fn status_event(call_sid: &str, status: CallStatus, seq: Option<u32>) -> StatusEvent {
    let key = format!("{call_sid}-{status}-{}", seq.map_or(-1, i64::from));
    let params = status_params(call_sid, status, seq);
    let callback = StatusCallback::parse(&params).expect("a status callback");
    let envelope = Envelope::call_status(&callback, &params, Some(&key));
    StatusEvent::from_envelope(&envelope).expect("a status event")
}

/// Posts a form to `target`, signed (when `token` is given) for `public_url`.
pub async fn post_form(
    target: &str,
    public_url: &str,
    params: &Params,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(params.to_form());
    if let Some(token) = token {
        request = request.header(
            "x-twilio-signature",
            compute_signature(token, public_url, params.iter()),
        );
    }
    request.send().await.expect("the function URL answers")
}

/// Items in a DynamoDB table.
/// What an item weighs by DynamoDB's rule: each attribute's name plus its value's size
/// (strings and numbers by their bytes, sets and lists and maps by their members).
pub fn item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    fn value(v: &V) -> usize {
        match v {
            V::S(s) | V::N(s) => s.len(),
            V::B(b) => b.as_ref().len(),
            V::Bool(_) | V::Null(_) => 1,
            V::Ss(l) | V::Ns(l) => l.iter().map(String::len).sum(),
            V::L(l) => 3 + l.iter().map(|v| 1 + value(v)).sum::<usize>(),
            V::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// One item of `table`, as DynamoDB holds it.
pub async fn stored_item(
    sdk: &SdkConfig,
    table: &str,
    (pk, sk): (&str, &str),
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue;
    aws_sdk_dynamodb::Client::new(sdk)
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("the item exists")
}

pub async fn item_count(sdk: &SdkConfig, table: &str) -> usize {
    let output = aws_sdk_dynamodb::Client::new(sdk)
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan");
    output.items().len()
}

/// An SDK interceptor that fails requests of one operation before they are sent, as a
/// throttled service, a network fault or a crash at that point would.
#[derive(Debug)]
pub struct FailOperation {
    operation: &'static str,
    /// Only the `n`th request of the operation (1-based); `None`: every one.
    nth: Option<u32>,
    seen: AtomicU32,
}

impl FailOperation {
    pub fn always(operation: &'static str) -> Self {
        Self {
            operation,
            nth: None,
            seen: AtomicU32::new(0),
        }
    }

    pub fn nth(operation: &'static str, n: u32) -> Self {
        Self {
            nth: Some(n),
            ..Self::always(operation)
        }
    }
}

impl Intercept for FailOperation {
    fn name(&self) -> &'static str {
        "FailOperation"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg
            .load::<Metadata>()
            .is_none_or(|m| m.name() != self.operation)
        {
            return Ok(());
        }
        let count = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.nth.is_none_or(|n| n == count) {
            return Err(format!("injected: {} failed", self.operation).into());
        }
        Ok(())
    }
}

/// `infra/template.yaml`, read as the reviews in `tests/infra_agreement.rs` and the
/// operator-policy check in `tests/voicectl.rs` need it.
pub mod template {
    use devstack::workspace::Workspace;
    use serde_yaml::Value;

    pub fn template() -> Value {
        let text =
            std::fs::read_to_string(Workspace::locate().template()).expect("infra/template.yaml");
        serde_yaml::from_str(&text).expect("the template is YAML")
    }

    /// A resource's `Properties`.
    pub fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
        &template["Resources"][name]["Properties"]
    }

    /// The IAM statements a function's `Policies` or a managed policy's document hold.
    pub fn statements<'a>(template: &'a Value, logical: &str) -> Vec<&'a Value> {
        let properties = resource(template, logical);
        let documents: Vec<&Value> = match properties["Policies"].as_sequence() {
            Some(policies) => policies.iter().collect(),
            None => vec![&properties["PolicyDocument"]],
        };
        documents
            .into_iter()
            .flat_map(|d| d["Statement"].as_sequence().expect("a Statement list"))
            .collect()
    }

    /// A statement's actions (`Action` is one string or a list).
    pub fn actions(statement: &Value) -> Vec<&str> {
        match &statement["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Sequence(a) => a.iter().filter_map(Value::as_str).collect(),
            other => panic!("odd Action {other:?}"),
        }
    }
}

/// Every instance's log of `function` in a run's log folder (`<function>-<n>.log`), one
/// after another: a worker runs its mapping's MaximumConcurrency of instances, a webhook
/// several, and any one of them may take a request or a batch.
pub fn instance_logs(log_dir: &std::path::Path, function: &str) -> String {
    let is_instance = |name: &str| {
        name.strip_prefix(function)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(".log"))
            .is_some_and(|n| n.parse::<usize>().is_ok())
    };
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return String::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| is_instance(&e.file_name().to_string_lossy()))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}
