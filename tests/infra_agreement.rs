//! `infra/template.yaml` read statically: the names it gives resources are the ones voicectl
//! derives from a stack's name, the functions read the environment the template sets, and the
//! template keeps the properties the design asks for (and which the emulator does not
//! enforce: IAM resources and conditions, bucket policies, lifecycles). The local stack is
//! deployed from this very template (`devstack::deploy`; tests/template_deploy.rs).

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use devstack::workspace::Workspace;
use serde_yaml::Value;
use voicehooks::config::{self, local};
use voicehooks::dynamodb::{PARTITION_KEY, SORT_KEY};
use voicehooks::stack_names::StackNames;
use voicehooks_tests::template::{actions, resource, statements, template};

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
    assert_eq!(functions.len(), 11, "{functions:?}");
    functions
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {value:?}"))
}

#[test]
fn resource_names_are_the_ones_voicectl_derives_from_the_stack_name() {
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
    let account = devstack::emulator::ACCOUNT_ID;
    assert_eq!(
        sub(&resource(&t, "RecordingsBucket")["BucketName"]).replace("${AWS::AccountId}", account),
        names.recordings_bucket(account)
    );
    assert_eq!(
        sub(&resource(&t, "SpillBucket")["BucketName"]).replace("${AWS::AccountId}", account),
        names.spill_bucket(account)
    );
}

#[test]
fn the_spill_is_private_tls_only_never_expires_events_and_needs_no_kms_key() {
    let t = template();
    let bucket = resource(&t, "SpillBucket");
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][setting].as_bool(),
            Some(true),
            "{setting}"
        );
    }
    // Encrypted with S3's keys, so a KMS outage that stops SQS does not stop the spill.
    let sse = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"].as_str(),
        Some("AES256")
    );
    for rule in bucket["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap()
    {
        assert!(
            rule.get("ExpirationInDays").is_none(),
            "spilled events must never expire"
        );
    }
    let policy = &resource(&t, "SpillBucketPolicy")["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"].as_str(), Some("Deny"));
    assert_eq!(
        policy["Condition"]["Bool"]["aws:SecureTransport"].as_str(),
        Some("false")
    );
    // The drainer runs every minute, one run at a time.
    let drainer = resource(&t, "SpillDrainerFunction");
    assert_eq!(
        drainer["Events"]["EveryMinute"]["Properties"]["Schedule"].as_str(),
        Some("rate(1 minute)")
    );
    assert_eq!(number(&drainer["ReservedConcurrentExecutions"]), 1);
}

#[test]
fn every_url_to_paste_into_twilio_carries_our_connection_overrides() {
    use voicehooks::twilio::overrides;
    let t = template();
    for (output, path, fragment) in [
        ("StatusCallbackUrl", "/twilio/status", overrides::CALLBACK),
        (
            "RecordingCallbackUrl",
            "/twilio/recording",
            overrides::CALLBACK,
        ),
        ("VoiceUrl", "/twilio/voice", overrides::VOICE),
        (
            "VoiceFallbackUrl",
            overrides::FALLBACK_PATH,
            overrides::FALLBACK,
        ),
    ] {
        let Value::Tagged(tagged) = &t["Outputs"][output]["Value"] else {
            panic!("{output} is not a !Sub")
        };
        let url = tagged.value[0].as_str().unwrap();
        assert_eq!(url, format!("${{Base}}{path}#{fragment}"), "{output}");
        assert_eq!(overrides::for_path(path), fragment, "{output}");
    }
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
    assert_eq!(expiring, [voicehooks::recording::keys::AUDIO_PREFIX]);
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
fn each_queue_visibility_is_six_worker_timeouts() {
    // As AWS advises for Lambda event sources, so that a batch in flight is never handed to
    // a second worker; CloudFormation cannot multiply, so the template states both.
    let t = template();
    for (queue, worker) in [
        ("StatusQueue", "StatusWorkerFunction"),
        ("RecordingQueue", "RecordingWorkerFunction"),
        ("TranscriptQueue", "TranscriptWorkerFunction"),
    ] {
        let worker_timeout = number(&resource(&t, worker)["Timeout"]);
        assert_eq!(
            number(&resource(&t, queue)["VisibilityTimeout"]),
            6 * worker_timeout,
            "{queue}"
        );
    }
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
        config::SPILL_BUCKET,
    ];
    webhook.sort_unstable();
    assert_eq!(env_names("WebhookStatusFunction"), webhook);
    webhook.push(config::ENQUEUE_DEADLINE_MS);
    webhook.sort_unstable();
    assert_eq!(env_names("WebhookVoiceFunction"), webhook);
    fn sorted(mut names: Vec<&'static str>) -> Vec<&'static str> {
        names.sort_unstable();
        names
    }
    assert_eq!(
        env_names("StatusWorkerFunction"),
        sorted(vec![
            config::CALLS_TABLE,
            config::STATUS_QUEUE_URL,
            config::DEAD_LETTER_QUEUE_URL,
            config::MAX_RECEIVE_COUNT,
        ])
    );
    assert_eq!(
        env_names("WebhookRecordingFunction"),
        sorted(vec![
            config::PUBLIC_BASE_URL,
            config::RECORDING_QUEUE_URL,
            config::TWILIO_SECRET_ID,
            config::SPILL_BUCKET,
        ])
    );
    assert_eq!(
        env_names("WebhookTranscriptionFunction"),
        sorted(vec![
            config::PUBLIC_BASE_URL,
            config::TRANSCRIPT_QUEUE_URL,
            config::TWILIO_SECRET_ID,
            config::SPILL_BUCKET,
        ])
    );
    assert_eq!(
        env_names("WebhookFallbackFunction"),
        sorted(vec![config::PUBLIC_BASE_URL, config::TWILIO_SECRET_ID])
    );
    assert_eq!(
        env_names("ReconcilerFunction"),
        sorted(vec![
            config::TWILIO_SECRET_ID,
            config::CALLS_TABLE,
            config::STATUS_QUEUE_URL,
            config::RECORDING_QUEUE_URL,
            config::RECONCILE_WINDOW_SECS,
        ])
    );
    assert_eq!(
        env_names("SoftphoneTokenFunction"),
        sorted(vec![
            config::TWILIO_SECRET_ID,
            config::SOFTPHONE_IDENTITY_CLAIM,
            config::SOFTPHONE_TTL_SECS,
        ])
    );
    assert_eq!(
        env_names("SpillDrainerFunction"),
        sorted(vec![
            config::SPILL_BUCKET,
            config::STATUS_QUEUE_URL,
            config::RECORDING_QUEUE_URL,
            config::TRANSCRIPT_QUEUE_URL,
            // Requests spilled unverified are checked as the webhooks check them.
            config::PUBLIC_BASE_URL,
            config::TWILIO_SECRET_ID,
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
            config::MAX_RECEIVE_COUNT,
            config::MEDIA_FORMAT,
            config::DELETE_FROM_TWILIO,
            config::TRANSCRIBE_REDACT_PII,
        ])
    );
    // A worker dead-letters on the receive SQS's redrive policy would move the message on,
    // so both must read the same parameter.
    for worker in [
        "StatusWorkerFunction",
        "RecordingWorkerFunction",
        "TranscriptWorkerFunction",
    ] {
        assert_eq!(
            referenced(
                &resource(&t, worker)["Environment"]["Variables"][config::MAX_RECEIVE_COUNT]
            )
            .as_deref(),
            Some("MaxReceiveCount"),
            "{worker}"
        );
    }
    for queue in ["StatusQueue", "RecordingQueue", "TranscriptQueue"] {
        assert_eq!(
            referenced(&resource(&t, queue)["RedrivePolicy"]["maxReceiveCount"]).as_deref(),
            Some("MaxReceiveCount"),
            "{queue}"
        );
    }
    assert_eq!(
        env_names("TranscriptWorkerFunction"),
        sorted(vec![
            config::CALLS_TABLE,
            config::RECORDINGS_BUCKET,
            config::TRANSCRIPT_QUEUE_URL,
            config::DEAD_LETTER_QUEUE_URL,
            config::MAX_RECEIVE_COUNT,
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

/// Who the template grants anything: every function, and the operators' managed policy.
fn principals(template: &Value) -> Vec<String> {
    let mut all = functions(template);
    all.extend(resources_of_type(template, "AWS::IAM::ManagedPolicy"));
    assert!(all.contains(&"OperatorPolicy".to_owned()), "{all:?}");
    all
}

#[test]
fn every_iam_statement_names_its_resources() {
    let t = template();
    for principal in principals(&t) {
        for statement in statements(&t, &principal) {
            let actions = actions(statement);
            assert!(
                actions.iter().all(|a| !a.contains('*')),
                "{principal}: wildcard action in {actions:?}"
            );
            assert!(
                !matches!(&statement["Resource"], Value::String(r) if r == "*"),
                "{principal}: Resource * for {actions:?}"
            );
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
                "ANY /twilio/conference".to_owned(),
                "integrations/${WebhookStatusIntegration}".to_owned()
            ),
            (
                "ANY /twilio/fallback".to_owned(),
                "integrations/${WebhookFallbackIntegration}".to_owned()
            ),
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
            (
                "POST /softphone/token".to_owned(),
                "integrations/${SoftphoneTokenIntegration}".to_owned()
            ),
        ]
    );
    // Every action URL the flows emit is served by a route and understood by the function.
    let urls = voicehooks::flows::Urls::new("https://x.test");
    for url in [
        urls.voice("a"),
        urls.menu("a", 1, 2),
        urls.dial_done("a"),
        urls.recorded("a"),
    ] {
        let rest = &url["https://x.test".len()..];
        let (rest, fragment) = rest.split_once('#').unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        assert_eq!(fragment, voicehooks::twilio::overrides::VOICE, "{url}");
        let steps = path.matches('/').count();
        assert!(
            path.starts_with("/twilio/voice") && steps <= 3,
            "{path} has no route"
        );
        voicehooks::flows::Step::from_request(path, query).unwrap();
    }
}

#[test]
fn softphone_tokens_sit_behind_a_jwt_authorizer_of_the_configured_issuer() {
    let t = template();
    let route = resource(&t, "SoftphoneTokenRoute");
    assert_eq!(route["AuthorizationType"].as_str(), Some("JWT"));
    assert_eq!(
        referenced(&route["AuthorizerId"]).as_deref(),
        Some("SoftphoneTokenAuthorizer")
    );
    let authorizer = resource(&t, "SoftphoneTokenAuthorizer");
    assert_eq!(authorizer["AuthorizerType"].as_str(), Some("JWT"));
    assert_eq!(
        authorizer["IdentitySource"][0].as_str(),
        Some("$request.header.Authorization")
    );
    let jwt = &authorizer["JwtConfiguration"];
    assert_eq!(
        referenced(&jwt["Issuer"]).as_deref(),
        Some("SoftphoneTokenIssuer")
    );
    assert_eq!(
        referenced(&jwt["Audience"]).as_deref(),
        Some("SoftphoneTokenAudience")
    );
    // The TTL parameter cannot exceed what Twilio accepts, nor the function's own bound.
    let ttl = &t["Parameters"]["SoftphoneTokenTtlSeconds"];
    assert_eq!(
        number(&ttl["MaxValue"]),
        voicehooks::softphone::MAX_TTL.as_secs()
    );
    assert_eq!(
        number(&ttl["Default"]),
        voicehooks::softphone::DEFAULT_TTL.as_secs()
    );
    let env = &resource(&t, "SoftphoneTokenFunction")["Environment"]["Variables"];
    assert_eq!(
        referenced(&env[config::SOFTPHONE_TTL_SECS]).as_deref(),
        Some("SoftphoneTokenTtlSeconds")
    );
    assert_eq!(
        referenced(&env[config::SOFTPHONE_IDENTITY_CLAIM]).as_deref(),
        Some("SoftphoneIdentityClaim")
    );
}

/// What a `!Ref X` or `!GetAtt X.Attr` points at (`X`), or a `!Sub` ARN with each
/// `${X.Arn}` written as `X` (`RecordingsBucket/recordings/*`) and `${AWS::Region}` as
/// `AWS::Region`.
fn referenced(value: &Value) -> Option<String> {
    let Value::Tagged(tagged) = value else {
        return None;
    };
    let name = tagged.value.as_str()?;
    match tagged.tag.to_string().as_str() {
        "!Ref" => Some(name.to_owned()),
        "!GetAtt" => name.split('.').next().map(str::to_owned),
        "!Sub" => Some(name.replace(".Arn}", "").replace("${", "").replace('}', "")),
        _ => None,
    }
}

fn resources_of_type(template: &Value, kind: &str) -> Vec<String> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect()
}

/// The security review, as code: what each function may do, encryption at rest and in
/// transit everywhere data rests, and no secret in configuration.
#[test]
fn each_function_may_do_only_its_own_job() {
    let t = template();
    // Per function: the actions it may take and the resources it may take them on. Anything
    // else in its policies fails the review; so does a missing grant (the test lists the job).
    const TABLE: &str = "CallsTable";
    const SECRET: &str = "TwilioSecret";
    const AUDIO: &str = "RecordingsBucket/recordings/*";
    const TRANSCRIPTS: &str = "RecordingsBucket/transcripts/*";
    const JOBS: &str =
        "arn:AWS::Partition:transcribe:AWS::Region:AWS::AccountId:transcription-job/RE*";
    let consume = |queue: &'static str| {
        [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        ]
        .map(|action| (action, queue))
    };
    // A webhook may send to its queue, spill only its own kind of event, read the token.
    let webhook = |queue: &'static str, spill: &'static str| {
        vec![
            ("sqs:SendMessage", queue),
            ("s3:PutObject", spill),
            ("secretsmanager:GetSecretValue", SECRET),
        ]
    };
    let jobs: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "WebhookStatusFunction",
            [
                webhook("StatusQueue", "SpillBucket/spill/call.status/*"),
                vec![("s3:PutObject", "SpillBucket/spill/conference.status/*")],
            ]
            .concat(),
        ),
        (
            "WebhookVoiceFunction",
            webhook("StatusQueue", "SpillBucket/spill/call.started/*"),
        ),
        (
            "WebhookRecordingFunction",
            webhook("RecordingQueue", "SpillBucket/spill/recording.status/*"),
        ),
        (
            "WebhookTranscriptionFunction",
            webhook(
                "TranscriptQueue",
                "SpillBucket/spill/transcription.twilio/*",
            ),
        ),
        // The fallback reads the token and nothing else.
        (
            "WebhookFallbackFunction",
            vec![("secretsmanager:GetSecretValue", SECRET)],
        ),
        // The reconciler reads Twilio's credentials and the table, and queues repairs.
        (
            "ReconcilerFunction",
            vec![
                ("secretsmanager:GetSecretValue", SECRET),
                ("dynamodb:GetItem", TABLE),
                ("sqs:SendMessage", "StatusQueue"),
                ("sqs:SendMessage", "RecordingQueue"),
            ],
        ),
        // Softphone tokens are signed with the API key in the secret: nothing else.
        (
            "SoftphoneTokenFunction",
            vec![("secretsmanager:GetSecretValue", SECRET)],
        ),
        (
            "SpillDrainerFunction",
            vec![
                ("s3:ListBucket", "SpillBucket"),
                ("s3:GetObject", "SpillBucket/spill/*"),
                ("s3:DeleteObject", "SpillBucket/spill/*"),
                ("sqs:SendMessage", "StatusQueue"),
                ("sqs:SendMessage", "RecordingQueue"),
                ("sqs:SendMessage", "TranscriptQueue"),
                // Checks requests spilled unverified, with the webhooks' token.
                ("secretsmanager:GetSecretValue", SECRET),
            ],
        ),
        (
            "StatusWorkerFunction",
            [
                vec![
                    ("dynamodb:UpdateItem", TABLE),
                    // Conference events and rooms, on their keys only (checked below).
                    ("dynamodb:PutItem", TABLE),
                    ("dynamodb:Query", TABLE),
                    ("sqs:SendMessage", "StatusDeadLetterQueue"),
                    // A message a batch deadline came before is handed back, fresh.
                    ("sqs:SendMessage", "StatusQueue"),
                ],
                consume("StatusQueue").to_vec(),
            ]
            .concat(),
        ),
        (
            "RecordingWorkerFunction",
            [
                vec![
                    ("dynamodb:GetItem", TABLE),
                    ("dynamodb:UpdateItem", TABLE),
                    ("s3:PutObject", AUDIO),
                    ("s3:GetObject", AUDIO),
                    ("s3:AbortMultipartUpload", AUDIO),
                    // Transcribe writes its output with the caller's (this role's) rights.
                    ("s3:PutObject", TRANSCRIPTS),
                    ("transcribe:StartTranscriptionJob", JOBS),
                    ("secretsmanager:GetSecretValue", SECRET),
                    ("sqs:SendMessage", "RecordingDeadLetterQueue"),
                    // A long archive continues in a fresh message; an unstarted one is
                    // handed back.
                    ("sqs:SendMessage", "RecordingQueue"),
                ],
                consume("RecordingQueue").to_vec(),
            ]
            .concat(),
        ),
        (
            "TranscriptWorkerFunction",
            [
                vec![
                    ("dynamodb:UpdateItem", TABLE),
                    ("s3:GetObject", TRANSCRIPTS),
                    ("transcribe:GetTranscriptionJob", JOBS),
                    ("sqs:SendMessage", "TranscriptDeadLetterQueue"),
                    // A message a batch deadline came before is handed back, fresh.
                    ("sqs:SendMessage", "TranscriptQueue"),
                ],
                consume("TranscriptQueue").to_vec(),
            ]
            .concat(),
        ),
    ];
    assert_eq!(
        jobs.len(),
        functions(&t).len(),
        "every function is reviewed"
    );
    for (function, allowed) in &jobs {
        assert_may_do_only(&t, function, allowed);
    }
    // The status worker writes whole items only under the rooms' keys: a call's item is
    // only ever updated, never replaced.
    for statement in statements(&t, "StatusWorkerFunction") {
        let actions = actions(statement);
        if actions.contains(&"dynamodb:PutItem") || actions.contains(&"dynamodb:Query") {
            assert_eq!(
                statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
                serde_yaml::from_str::<Value>(r#"["CONF#*"]"#).unwrap(),
                "{statement:?}"
            );
        }
    }
}

/// Every (action, resource) pair `principal` is granted, resources by logical name.
fn grants(t: &Value, principal: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for statement in statements(t, principal) {
        let targets: Vec<String> = match &statement["Resource"] {
            Value::Sequence(r) => r.iter().filter_map(referenced).collect(),
            one => referenced(one).into_iter().collect(),
        };
        for action in actions(statement) {
            pairs.extend(targets.iter().map(|r| (action.to_owned(), r.clone())));
        }
    }
    pairs
}

/// Fails unless every grant of `principal` is in `allowed`; KMS only on the stack's key.
fn assert_may_do_only(t: &Value, principal: &str, allowed: &[(&str, &str)]) {
    for (action, target) in grants(t, principal) {
        if action.starts_with("kms:") {
            assert_eq!(target, "DataKey", "{principal}: {action} on {target}");
        } else {
            assert!(
                allowed.contains(&(action.as_str(), target.as_str())),
                "{principal} may {action} on {target}: not its job"
            );
        }
    }
}

/// On-call's policy: what voicectl's commands do (`tests/voicectl.rs` checks that the
/// calls voicectl really makes are all granted) and nothing else: no reading of the work
/// queues (that is the workers' job), no S3, no Transcribe, no writing the secret.
#[test]
fn operators_may_inspect_and_put_right_but_not_consume_the_work_queues() {
    let t = template();
    let mut allowed = Vec::new();
    for dlq in [
        "StatusDeadLetterQueue",
        "RecordingDeadLetterQueue",
        "TranscriptDeadLetterQueue",
    ] {
        for action in [
            "sqs:GetQueueUrl",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
        ] {
            allowed.push((action, dlq));
        }
    }
    for queue in ["StatusQueue", "RecordingQueue", "TranscriptQueue"] {
        allowed.extend([("sqs:GetQueueUrl", queue), ("sqs:SendMessage", queue)]);
    }
    for action in [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ] {
        allowed.push((action, "CallsTable"));
    }
    allowed.push(("secretsmanager:GetSecretValue", "TwilioSecret"));
    // verify: the base URL the status webhook checks signatures against.
    allowed.push(("lambda:GetFunctionConfiguration", "WebhookStatusFunction"));
    // `dlq stats` counts what waits in the spill.
    allowed.push(("s3:ListBucket", "SpillBucket"));
    assert_may_do_only(&t, "OperatorPolicy", &allowed);
    // And everything it lists is granted: a missing grant is an AccessDenied at 3 a.m.
    let granted = grants(&t, "OperatorPolicy");
    for (action, target) in &allowed {
        assert!(
            granted.contains(&(action.to_string(), target.to_string())),
            "OperatorPolicy lacks {action} on {target}"
        );
    }
    assert_eq!(
        t["Outputs"]["OperatorPolicyArn"]["Value"],
        Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new("Ref"),
            value: Value::String("OperatorPolicy".into()),
        })),
        "the stack outputs the policy to attach"
    );
}

#[test]
fn every_queue_and_the_table_are_encrypted_and_queues_refuse_plain_http() {
    let t = template();
    let queues = resources_of_type(&t, "AWS::SQS::Queue");
    assert_eq!(queues.len(), 6, "{queues:?}");
    for queue in &queues {
        assert_eq!(
            referenced(&resource(&t, queue)["KmsMasterKeyId"]).as_deref(),
            Some("DataKey"),
            "{queue} is not encrypted with the stack's key"
        );
    }
    let mut tls_only = Vec::new();
    for policy in resources_of_type(&t, "AWS::SQS::QueuePolicy") {
        let document = &resource(&t, &policy)["PolicyDocument"];
        let denies_http = document["Statement"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|s| {
                s["Effect"] == "Deny"
                    && s["Action"] == "sqs:*"
                    && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
            });
        assert!(denies_http, "{policy} does not refuse plain HTTP");
        tls_only.extend(
            resource(&t, &policy)["Queues"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(referenced),
        );
    }
    tls_only.sort();
    let mut all = queues.clone();
    all.sort();
    assert_eq!(tls_only, all, "every queue is under a TLS-only policy");

    let sse = &resource(&t, "CallsTable")["SSESpecification"];
    assert_eq!(sse["SSEEnabled"], true);
    assert_eq!(sse["SSEType"], "KMS");
    assert_eq!(
        referenced(&sse["KMSMasterKeyId"]).as_deref(),
        Some("DataKey")
    );
    for group in resources_of_type(&t, "AWS::Logs::LogGroup") {
        assert_eq!(
            referenced(&resource(&t, &group)["KmsKeyId"]).as_deref(),
            Some("DataKey"),
            "log group {group} is not encrypted with the stack's key"
        );
    }
}

#[test]
fn no_secret_sits_in_configuration_and_every_checkov_skip_says_why() {
    let t = template();
    for function in functions(&t) {
        let variables = resource(&t, &function)["Environment"]["Variables"]
            .as_mapping()
            .unwrap();
        for (name, value) in variables {
            let name = name.as_str().unwrap();
            // The secret is named by its id; its value is read at run time.
            let named_secret = ["TOKEN", "PASSWORD", "SECRET", "KEY"]
                .iter()
                .any(|word| name.contains(word));
            if named_secret {
                assert!(
                    referenced(value).is_some(),
                    "{function}: {name} holds a literal value"
                );
                assert!(name.ends_with("_ID"), "{function}: {name} is not an id");
            }
            if let Some(literal) = value.as_str() {
                assert!(
                    !literal.chars().all(|c| c.is_ascii_hexdigit()) || literal.len() < 32,
                    "{function}: {name} looks like a token"
                );
            }
        }
    }
    let mut skips = 0;
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        let Some(list) = resource["Metadata"]["checkov"]["skip"].as_sequence() else {
            continue;
        };
        for skip in list {
            skips += 1;
            let reason = skip["comment"].as_str().unwrap_or_default();
            assert!(
                reason.split_whitespace().count() >= 8,
                "{:?} skips {:?} without a reason",
                name.as_str(),
                skip["id"]
            );
        }
    }
    assert!(skips > 0);
}
