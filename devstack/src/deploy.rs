//! The local stack as CloudFormation makes it: `infra/template.yaml` goes through the SAM
//! transform offline (`devstack/sam_translate.py`, the pinned aws-sam-translator, as `sam
//! deploy`'s change set has CloudFormation do) and the result is created as a stack on the
//! emulator's CloudFormation. The queues, table, buckets, key, secret, roles, functions and
//! event source mappings are then what the stack made, and everything the local stack needs
//! is read back from it: the functions' configuration (environment, timeout, memory, role)
//! from Lambda, the mappings from Lambda, the resources' names from the stack.
//!
//! What moto's CloudFormation does not model is read from the same template and emulated by
//! devstack: the HTTP API's routes ([`Route`], served as function URLs), its JWT authorizer
//! ([`crate::gateway`]) and the queues' pollers ([`crate::poller`], configured from the
//! mappings). Secrets Manager's model is the emulator wrapper's (`devstack/moto_server.py`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use serde_json::{Value, json};
use voicehooks::config::local;

use aws_credential_types::Credentials;

use crate::emulator::{ACCOUNT_ID, Emulator, REGION};
use crate::workspace::Workspace;

pub use voicehooks::stack_names::StackNames;

/// A function of the stack as Lambda has it configured.
#[derive(Debug, Clone)]
pub struct DeployedFunction {
    /// The template's logical id (`StatusWorkerFunction`).
    pub logical_id: String,
    /// The binary `sam build` builds for it (`Metadata.BuildProperties.Binary`), which is
    /// also how the local Lambda APIs name it.
    pub binary: String,
    /// Lambda's function name (`voicehooks-local-status-worker`).
    pub name: String,
    pub role_arn: String,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    pub memory_mb: i32,
    /// `ReservedConcurrentExecutions`, when it has some.
    pub reserved_concurrency: Option<usize>,
    /// Its role's credentials (sts:AssumeRole), which Lambda would give it.
    pub credentials: Option<Credentials>,
}

/// An SQS event source mapping as Lambda has it.
#[derive(Debug, Clone)]
pub struct QueueMapping {
    /// The function's binary.
    pub function: String,
    pub queue_arn: String,
    pub queue_url: String,
    pub batch_size: i32,
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency` (Lambda's default for SQS when unset: 1,000).
    pub max_concurrency: usize,
    pub enabled: bool,
}

/// An HTTP API route (`AWS::ApiGatewayV2::Route`), from the translated template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None` for `ANY`.
    pub method: Option<String>,
    /// `/twilio/voice/{step}` as the route key has it.
    pub path: String,
    /// The binary of the function its integration invokes.
    pub function: String,
    /// Behind the API's JWT authorizer.
    pub jwt: bool,
}

impl Route {
    /// The literal start of the path, which every request the route takes begins with
    /// (`/twilio/voice/` for `/twilio/voice/{step}`).
    pub fn prefix(&self) -> &str {
        self.path.split('{').next().unwrap_or_default()
    }
}

/// A work queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub name: String,
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
}

/// The stack's resources by what the local stack uses them for.
#[derive(Debug, Clone)]
pub struct Resources {
    pub names: StackNames,
    pub status_queue_url: String,
    pub status_dlq_url: String,
    pub recording: QueuePair,
    pub transcript: QueuePair,
    pub calls_table: String,
    /// The secret's ARN (its `Ref`).
    pub twilio_secret_id: String,
    pub recordings_bucket: String,
    /// Where webhooks spill what SQS did not take: private, SSE-S3.
    pub spill_bucket: String,
    /// The stack's KMS key (moto records it on objects without encrypting anything).
    pub recordings_kms_key: String,
    pub status_queue_arn: String,
    /// The queues' `maxReceiveCount`, as the workers are told it.
    pub max_receive_count: u32,
}

/// What CloudFormation made of the template on the emulator.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub stack_name: String,
    /// The template as the SAM transform left it (what CloudFormation was given).
    pub template: Value,
    pub outputs: BTreeMap<String, String>,
    /// Logical id → (resource type, physical id), for the resources the stack made.
    pub physical: BTreeMap<String, (String, String)>,
    pub functions: Vec<DeployedFunction>,
    pub mappings: Vec<QueueMapping>,
    pub routes: Vec<Route>,
    /// An IAM user with the stack's `OperatorPolicy` attached, and nothing else: voicectl's.
    pub operator: Option<Credentials>,
}

/// The template's parameters for the local stack (as `sam deploy --parameter-overrides`).
pub fn local_parameters(delete_from_twilio: bool) -> Vec<(String, String)> {
    [
        ("PublicBaseUrl", local::PUBLIC_BASE_URL),
        ("SoftphoneTokenIssuer", crate::gateway::LOCAL_ISSUER),
        ("SoftphoneTokenAudience", crate::gateway::LOCAL_AUDIENCE),
        // Deployed so the tests can run it; locally nothing schedules it (they invoke it).
        ("ReconcileSchedule", "rate(15 minutes)"),
        (
            "DeleteFromTwilio",
            if delete_from_twilio { "true" } else { "false" },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Where the stack's code and template are uploaded (as `sam deploy`'s managed bucket).
fn artifacts_bucket(stack: &str) -> String {
    format!("{stack}-artifacts-{ACCOUNT_ID}")
}

/// An empty zip archive (its end-of-central-directory record alone): the functions' code.
/// Locally the binaries run from `target/`; Lambda only needs an object to point at.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The SAM transform of `template` with `parameters`, each function's code at `code_uri`.
pub async fn translate(
    workspace: &Workspace,
    template: &Path,
    code_uri: &str,
    parameters: &[(String, String)],
) -> anyhow::Result<Value> {
    let python = workspace.stack_tools().join("python");
    let output = tokio::process::Command::new(&python)
        .arg(workspace.root.join("devstack/sam_translate.py"))
        .arg(template)
        .arg(REGION)
        .arg(code_uri)
        .args(parameters.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .await
        .with_context(|| format!("{} (run `make venv`)", python.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "the SAM transform failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Translates `template`, creates it as stack `stack_name` and reads back what it made.
pub async fn deploy(
    workspace: &Workspace,
    sdk: &SdkConfig,
    template: &Path,
    stack_name: &str,
    parameters: &[(String, String)],
) -> anyhow::Result<Deployment> {
    let s3 = voicehooks::aws::s3_client(sdk);
    let bucket = artifacts_bucket(stack_name);
    s3.create_bucket().bucket(&bucket).send().await?;
    s3.put_object()
        .bucket(&bucket)
        .key("code.zip")
        .body(EMPTY_ZIP.to_vec().into())
        .send()
        .await?;
    let translated = translate(
        workspace,
        template,
        &format!("s3://{bucket}/code.zip"),
        parameters,
    )
    .await?;
    // Through S3, as `sam deploy` does: a template over 51,200 bytes cannot be sent inline
    // (CloudFormation quotas, "Template body size in a request").
    s3.put_object()
        .bucket(&bucket)
        .key("template.json")
        .body(translated.to_string().into_bytes().into())
        .send()
        .await?;
    let cloudformation = aws_sdk_cloudformation::Client::new(sdk);
    cloudformation
        .create_stack()
        .stack_name(stack_name)
        .template_url(format!("https://{bucket}.s3.amazonaws.com/template.json"))
        .set_parameters(Some(
            parameters
                .iter()
                .map(|(k, v)| {
                    Parameter::builder()
                        .parameter_key(k)
                        .parameter_value(v)
                        .build()
                })
                .collect(),
        ))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .capabilities(Capability::CapabilityAutoExpand)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("CreateStack: {}", voicehooks::aws::error_summary(&e)))?;
    let stack = wait_for_stack(&cloudformation, stack_name).await?;
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    let mut physical = BTreeMap::new();
    let mut pages = cloudformation
        .list_stack_resources()
        .stack_name(stack_name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for r in page?.stack_resource_summaries() {
            if let (Some(logical), Some(kind), Some(id)) = (
                r.logical_resource_id(),
                r.resource_type(),
                r.physical_resource_id(),
            ) {
                physical.insert(logical.to_owned(), (kind.to_owned(), id.to_owned()));
            }
        }
    }
    let mut deployment = Deployment {
        stack_name: stack_name.to_owned(),
        template: translated,
        outputs,
        physical,
        functions: Vec::new(),
        mappings: Vec::new(),
        routes: Vec::new(),
        operator: None,
    };
    deployment.functions = read_functions(sdk, &deployment).await?;
    deployment.mappings = read_mappings(sdk, &deployment).await?;
    deployment.routes = deployment.read_routes()?;
    Ok(deployment)
}

async fn wait_for_stack(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> anyhow::Result<aws_sdk_cloudformation::types::Stack> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stacks = cloudformation
            .describe_stacks()
            .stack_name(stack_name)
            .send()
            .await?;
        let stack = stacks
            .stacks()
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no stack {stack_name}"))?;
        match stack.stack_status() {
            Some(StackStatus::CreateComplete) => return Ok(stack),
            Some(StackStatus::CreateInProgress) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            status => anyhow::bail!(
                "stack {stack_name} is {status:?}: {}",
                stack.stack_status_reason().unwrap_or("no reason given")
            ),
        }
    }
}

async fn read_functions(
    sdk: &SdkConfig,
    deployment: &Deployment,
) -> anyhow::Result<Vec<DeployedFunction>> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let mut functions = Vec::new();
    for (logical_id, (kind, name)) in &deployment.physical {
        if kind != "AWS::Lambda::Function" {
            continue;
        }
        let binary =
            deployment.template["Resources"][logical_id]["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .with_context(|| format!("{logical_id} names no Metadata.BuildProperties.Binary"))?
                .to_owned();
        let config = lambda
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {}", voicehooks::aws::error_summary(&e)))?;
        let reserved = lambda
            .get_function_concurrency()
            .function_name(name)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {}", voicehooks::aws::error_summary(&e)))?
            .reserved_concurrent_executions()
            .and_then(|n| usize::try_from(n).ok());
        functions.push(DeployedFunction {
            logical_id: logical_id.clone(),
            binary,
            name: name.clone(),
            role_arn: config.role().unwrap_or_default().to_owned(),
            env: config
                .environment()
                .and_then(|e| e.variables())
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            timeout: Duration::from_secs(u64::try_from(config.timeout().unwrap_or(3))?),
            memory_mb: config.memory_size().unwrap_or(128),
            reserved_concurrency: reserved,
            credentials: None,
        });
    }
    Ok(functions)
}

async fn read_mappings(
    sdk: &SdkConfig,
    deployment: &Deployment,
) -> anyhow::Result<Vec<QueueMapping>> {
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let listed = lambda.list_event_source_mappings().send().await?;
    let mut mappings = Vec::new();
    for m in listed.event_source_mappings() {
        let function_arn = m.function_arn().unwrap_or_default();
        let Some(function) = deployment
            .functions
            .iter()
            .find(|f| function_arn.ends_with(&format!(":function:{}", f.name)))
        else {
            continue;
        };
        let queue_arn = m.event_source_arn().unwrap_or_default().to_owned();
        let queue_name = queue_arn.rsplit(':').next().unwrap_or_default();
        mappings.push(QueueMapping {
            function: function.binary.clone(),
            queue_url: deployment.queue_url_named(queue_name)?,
            queue_arn,
            batch_size: m.batch_size().unwrap_or(10),
            batching_window: Duration::from_secs(
                u64::try_from(m.maximum_batching_window_in_seconds().unwrap_or(0))
                    .unwrap_or_default(),
            ),
            report_batch_item_failures: m
                .function_response_types()
                .iter()
                .any(|t| t.as_str() == "ReportBatchItemFailures"),
            max_concurrency: m
                .scaling_config()
                .and_then(|s| s.maximum_concurrency())
                .map_or(1000, |c| usize::try_from(c).unwrap_or(1000)),
            enabled: m.state().is_none_or(|s| s == "Enabled"),
        });
    }
    Ok(mappings)
}

impl Deployment {
    /// The environment of an SDK user of the stack as voicectl: the operator's credentials.
    pub fn operator(&self) -> anyhow::Result<&Credentials> {
        self.operator
            .as_ref()
            .context("the stack has no operator (deploy_local makes one)")
    }

    /// The physical id of resource `logical_id` (a queue's URL, a table's name, a secret's ARN).
    pub fn physical_id(&self, logical_id: &str) -> anyhow::Result<&str> {
        self.physical
            .get(logical_id)
            .map(|(_, id)| id.as_str())
            .with_context(|| format!("the stack made no {logical_id}"))
    }

    fn queue_url_named(&self, name: &str) -> anyhow::Result<String> {
        self.physical
            .values()
            .find(|(kind, url)| kind == "AWS::SQS::Queue" && url.ends_with(&format!("/{name}")))
            .map(|(_, url)| url.clone())
            .with_context(|| format!("the stack made no queue {name}"))
    }

    /// The function whose binary is `binary`.
    pub fn function(&self, binary: &str) -> anyhow::Result<&DeployedFunction> {
        self.functions
            .iter()
            .find(|f| f.binary == binary)
            .with_context(|| format!("the stack has no function {binary}"))
    }

    /// The SQS mapping that feeds `binary`.
    pub fn mapping(&self, binary: &str) -> anyhow::Result<&QueueMapping> {
        self.mappings
            .iter()
            .find(|m| m.function == binary)
            .with_context(|| format!("no event source mapping feeds {binary}"))
    }

    /// The HTTP API's routes whose functions the stack made (a route's `Condition` is its
    /// function's), each traced from its `Target` to its integration's function.
    fn read_routes(&self) -> anyhow::Result<Vec<Route>> {
        let resources = self.template["Resources"]
            .as_object()
            .context("a template has Resources")?;
        let mut routes = Vec::new();
        for (logical_id, resource) in resources {
            if resource["Type"] != "AWS::ApiGatewayV2::Route" {
                continue;
            }
            let properties = &resource["Properties"];
            let route_key = properties["RouteKey"]
                .as_str()
                .with_context(|| format!("{logical_id} has no RouteKey"))?;
            let (method, path) = route_key
                .split_once(' ')
                .with_context(|| format!("{logical_id}: route key {route_key:?}"))?;
            let integration = properties["Target"]["Fn::Sub"]
                .as_str()
                .and_then(|t| t.strip_prefix("integrations/${"))
                .and_then(|t| t.strip_suffix('}'))
                .with_context(|| format!("{logical_id}: a Target of integrations/${{…}}"))?;
            let function = resources
                .get(integration)
                .and_then(|i| i["Properties"]["IntegrationUri"]["Fn::GetAtt"][0].as_str())
                .with_context(|| format!("{integration}: an IntegrationUri of a function"))?;
            let Some(deployed) = self.functions.iter().find(|f| f.logical_id == function) else {
                continue;
            };
            routes.push(Route {
                method: (method != "ANY").then(|| method.to_owned()),
                path: path.to_owned(),
                function: deployed.binary.clone(),
                jwt: properties["AuthorizationType"] == "JWT",
            });
        }
        Ok(routes)
    }

    /// The resources by their use, read from the stack.
    pub fn resources(&self) -> anyhow::Result<Resources> {
        let names = StackNames::new(&self.stack_name);
        let pair = |queue: &str, dlq: &str| -> anyhow::Result<QueuePair> {
            let url = self.physical_id(queue)?.to_owned();
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            Ok(QueuePair {
                arn: format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"),
                name,
                url,
                dlq_url: self.physical_id(dlq)?.to_owned(),
            })
        };
        let status = pair("StatusQueue", "StatusDeadLetterQueue")?;
        let max_receive_count = self
            .function("status-worker")?
            .env
            .get(voicehooks::config::MAX_RECEIVE_COUNT)
            .context("the status worker is not told maxReceiveCount")?
            .parse()?;
        Ok(Resources {
            max_receive_count,
            names,
            status_queue_url: status.url,
            status_dlq_url: status.dlq_url,
            status_queue_arn: status.arn,
            recording: pair("RecordingQueue", "RecordingDeadLetterQueue")?,
            transcript: pair("TranscriptQueue", "TranscriptDeadLetterQueue")?,
            calls_table: self.physical_id("CallsTable")?.to_owned(),
            twilio_secret_id: self.physical_id("TwilioSecret")?.to_owned(),
            recordings_bucket: self.physical_id("RecordingsBucket")?.to_owned(),
            spill_bucket: self.physical_id("SpillBucket")?.to_owned(),
            recordings_kms_key: format!(
                "arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{}",
                self.physical_id("DataKey")?
            ),
        })
    }
}

/// The local stack's template deployed, and the local Twilio account's credentials put in
/// its secret, as docs/OPERATIONS.md has an operator do after the first deploy. Then each function
/// gets its role's credentials (as Lambda assumes the role; no user may, by the roles' trust
/// policies), voicectl an IAM user with the `OperatorPolicy` and nothing else, and the
/// emulator starts enforcing IAM: from then on a request is refused unless its identity's
/// policies allow it, and unknown credentials are refused.
pub async fn deploy_local(
    workspace: &Workspace,
    emulator: &Emulator,
    template: &Path,
    parameters: &[(String, String)],
) -> anyhow::Result<Deployment> {
    let sdk = emulator.sdk_config().await;
    let mut deployment = deploy(workspace, &sdk, template, local::STACK_NAME, parameters).await?;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .put_secret_value()
        .secret_id(deployment.physical_id("TwilioSecret")?)
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
        .await
        .map_err(|e| anyhow::anyhow!("PutSecretValue: {}", voicehooks::aws::error_summary(&e)))?;
    let sts = aws_sdk_sts::Client::new(&sdk);
    for function in &mut deployment.functions {
        let assumed = sts
            .assume_role()
            .role_arn(&function.role_arn)
            .role_session_name(&function.binary)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "AssumeRole {}: {}",
                    function.role_arn,
                    voicehooks::aws::error_summary(&e)
                )
            })?;
        let c = assumed
            .credentials()
            .with_context(|| format!("no credentials for {}", function.role_arn))?;
        function.credentials = Some(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "sts:AssumeRole",
        ));
    }
    let iam = aws_sdk_iam::Client::new(&sdk);
    let operator = format!("{}-on-call", local::STACK_NAME);
    iam.create_user().user_name(&operator).send().await?;
    iam.attach_user_policy()
        .user_name(&operator)
        .policy_arn(
            deployment
                .outputs
                .get("OperatorPolicyArn")
                .context("the stack has no OperatorPolicyArn output")?,
        )
        .send()
        .await?;
    deployment.operator = Some(crate::emulator::access_key(&iam, &operator).await?);
    emulator.enforce_iam().await?;
    Ok(deployment)
}

/// The incident rehearsal's fault: `table` deleted. The template protects it from deletion
/// (`DeletionProtectionEnabled`), so, as an operator on AWS would have to, the protection is
/// turned off first.
pub async fn break_table(sdk: &SdkConfig, table: &str) -> anyhow::Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    dynamodb
        .update_table()
        .table_name(table)
        .deletion_protection_enabled(false)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{table}: {}", voicehooks::aws::error_summary(&e)))?;
    dynamodb
        .delete_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{table}: {}", voicehooks::aws::error_summary(&e)))?;
    Ok(())
}

/// Creates `table` again as the stack's template declares its table (keys, billing), read
/// from the template CloudFormation holds: the incident rehearsal's fix.
pub async fn restore_table(sdk: &SdkConfig, stack_name: &str, table: &str) -> anyhow::Result<()> {
    let body = aws_sdk_cloudformation::Client::new(sdk)
        .get_template()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetTemplate: {}", voicehooks::aws::error_summary(&e)))?
        .template_body
        .context("no template body")?;
    let template: Value = serde_json::from_str(&body)?;
    let declared = template["Resources"]
        .as_object()
        .and_then(|r| r.values().find(|r| r["Type"] == "AWS::DynamoDB::Table"))
        .context("the template declares no table")?;
    let properties = &declared["Properties"];
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let text = |v: &Value, field: &str| v[field].as_str().unwrap_or_default().to_owned();
    let mut create = aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(text(properties, "BillingMode").as_str()))
        .deletion_protection_enabled(properties["DeletionProtectionEnabled"] == true);
    for key in properties["KeySchema"].as_array().into_iter().flatten() {
        create = create.key_schema(
            KeySchemaElement::builder()
                .attribute_name(text(key, "AttributeName"))
                .key_type(KeyType::from(text(key, "KeyType").as_str()))
                .build()?,
        );
    }
    for attribute in properties["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(attribute, "AttributeName"))
                .attribute_type(ScalarAttributeType::from(
                    text(attribute, "AttributeType").as_str(),
                ))
                .build()?,
        );
    }
    create
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{table}: {}", voicehooks::aws::error_summary(&e)))?;
    Ok(())
}
