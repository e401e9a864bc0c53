//! `infra/template.yaml` and the local stack agree: the local bootstrap creates what the
//! template declares (names, keys, queue settings), the functions read the environment the
//! template sets, and the template keeps the properties the design asks for.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use devstack::resources::{self, StackNames};
use devstack::workspace::Workspace;
use serde_yaml::Value;
use shared::config::{self, local};
use shared::store::{PARTITION_KEY, SORT_KEY};

fn template() -> Value {
    let text =
        std::fs::read_to_string(Workspace::locate().template()).expect("infra/template.yaml");
    serde_yaml::from_str(&text).expect("the template is YAML")
}

fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
    &template["Resources"][name]["Properties"]
}

/// Resolves a `!Sub` that names only `${AWS::StackName}`, as CloudFormation would.
fn sub(value: &Value) -> String {
    let Value::Tagged(tagged) = value else {
        panic!("expected !Sub, got {value:?}")
    };
    assert_eq!(tagged.tag, "!Sub");
    tagged
        .value
        .as_str()
        .expect("a !Sub string")
        .replace("${AWS::StackName}", local::STACK_NAME)
}

/// Every function the template declares.
fn functions(template: &Value) -> Vec<String> {
    let functions: Vec<String> = template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(functions.len(), 7, "{functions:?}");
    functions
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {value:?}"))
}

#[test]
fn resource_names_match_the_local_bootstrap() {
    let t = template();
    let names = StackNames::new(local::STACK_NAME);
    assert_eq!(
        sub(&resource(&t, "StatusQueue")["QueueName"]),
        names.status_queue()
    );
    assert_eq!(
        sub(&resource(&t, "StatusDeadLetterQueue")["QueueName"]),
        names.status_dlq()
    );
    assert_eq!(
        sub(&resource(&t, "CallsTable")["TableName"]),
        names.calls_table()
    );
    assert_eq!(
        sub(&resource(&t, "TwilioSecret")["Name"]),
        names.twilio_secret()
    );
    for (logical, name) in [
        ("RecordingQueue", names.recording_queue()),
        ("RecordingDeadLetterQueue", names.recording_dlq()),
        ("TranscriptQueue", names.transcript_queue()),
        ("TranscriptDeadLetterQueue", names.transcript_dlq()),
    ] {
        assert_eq!(sub(&resource(&t, logical)["QueueName"]), name);
    }
    // `${AWS::AccountId}` is the local account's.
    assert_eq!(
        sub(&resource(&t, "RecordingsBucket")["BucketName"])
            .replace("${AWS::AccountId}", devstack::emulator::ACCOUNT_ID),
        names.recordings_bucket(devstack::emulator::ACCOUNT_ID)
    );
}

#[test]
fn the_bucket_is_private_encrypted_tls_only_and_expires_audio_only() {
    let t = template();
    let bucket = resource(&t, "RecordingsBucket");
    let block = &bucket["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    let sse = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"].as_str(),
        Some("aws:kms")
    );
    let rules = bucket["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    let expiring: Vec<&str> = rules
        .iter()
        .filter(|r| r.get("ExpirationInDays").is_some())
        .map(|r| r["Prefix"].as_str().unwrap())
        .collect();
    assert_eq!(expiring, [shared::recording::keys::AUDIO_PREFIX]);
    let policy = &resource(&t, "RecordingsBucketPolicy")["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"].as_str(), Some("Deny"));
    assert_eq!(
        policy["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
        Some("false")
    );
    // The worker writes audio and Transcribe (as the worker) writes transcripts under the
    // prefixes the keys use; the transcript worker only reads transcripts.
    let statements = |function: &str| resource(&t, function)["Policies"][0]["Statement"].clone();
    let resources_of = |function: &str, sid: &str| -> String {
        let statements = statements(function);
        let statement = statements
            .as_sequence()
            .unwrap()
            .iter()
            .find(|s| s["Sid"].as_str() == Some(sid))
            .unwrap()
            .clone();
        sub(&statement["Resource"])
    };
    assert!(resources_of("RecordingWorkerFunction", "ArchiveAudio").ends_with("/recordings/*"));
    assert!(
        resources_of("RecordingWorkerFunction", "TranscribeWritesTranscripts")
            .ends_with("/transcripts/*")
    );
    assert!(
        resources_of("TranscriptWorkerFunction", "ReadTranscripts").ends_with("/transcripts/*")
    );
}

#[test]
fn table_keys_match_the_store() {
    let t = template();
    let table = resource(&t, "CallsTable");
    let keys: Vec<(&str, &str)> = table["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap(),
                k["KeyType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [(PARTITION_KEY, "HASH"), (SORT_KEY, "RANGE")]);
    for definition in table["AttributeDefinitions"].as_sequence().unwrap() {
        assert_eq!(definition["AttributeType"].as_str(), Some("S"));
    }
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn queue_settings_match_and_visibility_is_six_worker_timeouts() {
    let t = template();
    for (queue, worker, visibility, timeout) in [
        (
            "RecordingQueue",
            "RecordingWorkerFunction",
            resources::RECORDING_QUEUE_VISIBILITY_TIMEOUT_SECS,
            resources::RECORDING_WORKER_TIMEOUT_SECS,
        ),
        (
            "TranscriptQueue",
            "TranscriptWorkerFunction",
            resources::TRANSCRIPT_QUEUE_VISIBILITY_TIMEOUT_SECS,
            resources::TRANSCRIPT_WORKER_TIMEOUT_SECS,
        ),
    ] {
        let worker_timeout = number(&resource(&t, worker)["Timeout"]);
        assert_eq!(worker_timeout, u64::from(timeout), "{worker}");
        assert_eq!(
            number(&resource(&t, queue)["VisibilityTimeout"]),
            6 * worker_timeout
        );
        assert_eq!(
            number(&resource(&t, queue)["VisibilityTimeout"]),
            u64::from(visibility)
        );
    }
    let queue = resource(&t, "StatusQueue");
    let worker_timeout = number(&resource(&t, "StatusWorkerFunction")["Timeout"]);
    assert_eq!(
        worker_timeout,
        u64::from(resources::STATUS_WORKER_TIMEOUT_SECS)
    );
    assert_eq!(number(&queue["VisibilityTimeout"]), 6 * worker_timeout);
    assert_eq!(
        number(&queue["VisibilityTimeout"]),
        u64::from(resources::STATUS_QUEUE_VISIBILITY_TIMEOUT_SECS)
    );
    assert_eq!(
        number(&queue["MessageRetentionPeriod"]),
        u64::from(resources::STATUS_QUEUE_RETENTION_SECS)
    );
    assert_eq!(
        number(&resource(&t, "StatusDeadLetterQueue")["MessageRetentionPeriod"]),
        u64::from(resources::DLQ_RETENTION_SECS)
    );
    assert_eq!(
        number(&t["Parameters"]["MaxReceiveCount"]["Default"]),
        u64::from(resources::MAX_RECEIVE_COUNT)
    );
    let allow = &resource(&t, "StatusDeadLetterQueue")["RedriveAllowPolicy"];
    assert_eq!(allow["redrivePermission"].as_str(), Some("byQueue"));
    let source = sub(&allow["sourceQueueArnList"][0]);
    assert!(
        source.ends_with(&format!(
            ":{}",
            StackNames::new(local::STACK_NAME).status_queue()
        )),
        "{source}"
    );
}

#[test]
fn functions_get_the_environment_they_read() {
    let t = template();
    let env_names = |function: &str| -> Vec<String> {
        let mut names: Vec<String> = resource(&t, function)["Environment"]["Variables"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let mut webhook = vec![
        config::PUBLIC_BASE_URL,
        config::STATUS_QUEUE_URL,
        config::TWILIO_SECRET_ID,
    ];
    webhook.sort_unstable();
    assert_eq!(env_names("WebhookStatusFunction"), webhook);
    webhook.push(config::ENQUEUE_DEADLINE_MS);
    webhook.sort_unstable();
    assert_eq!(env_names("WebhookVoiceFunction"), webhook);
    assert_eq!(env_names("StatusWorkerFunction"), [config::CALLS_TABLE]);
    fn sorted(mut names: Vec<&'static str>) -> Vec<&'static str> {
        names.sort_unstable();
        names
    }
    assert_eq!(
        env_names("WebhookRecordingFunction"),
        sorted(vec![
            config::PUBLIC_BASE_URL,
            config::RECORDING_QUEUE_URL,
            config::TWILIO_SECRET_ID
        ])
    );
    assert_eq!(
        env_names("WebhookTranscriptionFunction"),
        sorted(vec![
            config::PUBLIC_BASE_URL,
            config::TRANSCRIPT_QUEUE_URL,
            config::TWILIO_SECRET_ID
        ])
    );
    assert_eq!(
        env_names("RecordingWorkerFunction"),
        sorted(vec![
            config::CALLS_TABLE,
            config::RECORDINGS_BUCKET,
            config::RECORDINGS_KMS_KEY_ID,
            config::TWILIO_SECRET_ID,
            config::RECORDING_QUEUE_URL,
            config::DEAD_LETTER_QUEUE_URL,
            config::MEDIA_FORMAT,
            config::DELETE_FROM_TWILIO,
            config::TRANSCRIBE_REDACT_PII,
        ])
    );
    assert_eq!(
        env_names("TranscriptWorkerFunction"),
        sorted(vec![
            config::CALLS_TABLE,
            config::RECORDINGS_BUCKET,
            config::TRANSCRIPT_QUEUE_URL,
            config::DEAD_LETTER_QUEUE_URL,
        ])
    );
}

#[test]
fn functions_are_arm64_cargo_lambda_builds_of_workspace_binaries() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    for function in functions(&t) {
        let metadata = &t["Resources"][&function]["Metadata"];
        assert_eq!(metadata["BuildMethod"].as_str(), Some("rust-cargolambda"));
        let binary = metadata["BuildProperties"]["Binary"].as_str().unwrap();
        let manifest = Workspace::locate()
            .root
            .join("functions")
            .join(binary)
            .join("Cargo.toml");
        assert!(
            manifest.exists(),
            "{function} builds {binary}, which the workspace must have"
        );
    }
    let sqs_event = &resource(&t, "StatusWorkerFunction")["Events"]["StatusQueue"]["Properties"];
    assert_eq!(
        sqs_event["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
}

#[test]
fn every_iam_statement_names_its_resources() {
    let t = template();
    for function in functions(&t) {
        for policy in resource(&t, &function)["Policies"].as_sequence().unwrap() {
            for statement in policy["Statement"].as_sequence().unwrap() {
                let actions: Vec<&str> = match &statement["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Sequence(a) => a.iter().filter_map(Value::as_str).collect(),
                    other => panic!("{function}: odd Action {other:?}"),
                };
                assert!(
                    actions.iter().all(|a| !a.contains('*')),
                    "{function}: wildcard action in {actions:?}"
                );
                assert!(
                    !matches!(&statement["Resource"], Value::String(r) if r == "*"),
                    "{function}: Resource * for {actions:?}"
                );
            }
        }
    }
}

#[test]
fn every_webhook_route_is_one_the_local_stack_serves_and_the_function_answers() {
    let t = template();
    let mut routes: Vec<(String, String)> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::ApiGatewayV2::Route"))
        .map(|r| {
            let target = sub(&r["Properties"]["Target"]);
            (
                r["Properties"]["RouteKey"].as_str().unwrap().to_owned(),
                target,
            )
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        [
            (
                "ANY /twilio/recording".to_owned(),
                "integrations/${WebhookRecordingIntegration}".to_owned()
            ),
            (
                "ANY /twilio/status".to_owned(),
                "integrations/${WebhookStatusIntegration}".to_owned()
            ),
            (
                "ANY /twilio/transcription".to_owned(),
                "integrations/${WebhookTranscriptionIntegration}".to_owned()
            ),
            (
                "ANY /twilio/voice".to_owned(),
                "integrations/${WebhookVoiceIntegration}".to_owned()
            ),
            (
                "ANY /twilio/voice/{step}".to_owned(),
                "integrations/${WebhookVoiceIntegration}".to_owned()
            ),
        ]
    );
    // Every action URL the flows emit is served by a route and understood by the function.
    let urls = shared::flows::Urls::new("https://x.test");
    for url in [
        urls.voice("a"),
        urls.menu("a", 1, 2),
        urls.dial_done("a"),
        urls.recorded("a"),
    ] {
        let rest = &url["https://x.test".len()..];
        let (path, query) = rest.split_once('?').unwrap();
        let steps = path.matches('/').count();
        assert!(
            path.starts_with("/twilio/voice") && steps <= 3,
            "{path} has no route"
        );
        shared::flows::Step::from_request(path, query).unwrap();
    }
}
