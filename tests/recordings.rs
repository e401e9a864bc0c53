//! The recording and transcript workers with the real SDK clients against the emulator and
//! the stand-in's media: archive, redelivery, media not ready, credentials, rate limits, a
//! refused URL, S3 failing mid-upload, a Transcribe conflict and a failed job; then the
//! whole path through the real function binaries.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::ExponentialBuilder;
use devstack::transcribe_completer::{NOT_AUDIO, TranscribeCompleter};
use devstack::{LocalStack, StackOptions};
use voicectl::media_server::{MediaServer, Recording};
use voicehooks::config::QueueSettings;
use voicehooks::config::{MediaFormat, local};
use voicehooks::events::Envelope;
use voicehooks::recording::keys::RecordingKey;
use voicehooks::recording::media::MediaHosts;
use voicehooks::recording::{ArchiveSettings, RecordingWorker, media_client};
use voicehooks::recording::{DynamoRecordingStore, RecordingRecord, RecordingStore};
use voicehooks::secrets::{StaticTokens, TwilioCredentials};
use voicehooks::transcribe::{JobStart, Transcriber, TranscriptWorker, TranscriptionRequest};
use voicehooks::twilio::{Params, RecordingCallback, TranscriptionCallback};
use voicehooks::worker::{Disposition, QueuedMessage, Settler};
use voicehooks_tests::{Aws, FailOperation, aws, post_form};

/// A deadline no test reaches: an invocation with time to spare.
fn with_time() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(120)
}

const CALL: &str = "CA0000000000000000000000000000c001";
const RECEIVED_AT: &str = "2026-11-23T10:00:00Z";

fn recording_sid(n: u32) -> String {
    format!("RE{n:032x}")
}

struct Rig {
    aws: Aws,
    media: MediaServer,
    worker: RecordingWorker<StaticTokens>,
    transcripts: TranscriptWorker,
    store: DynamoRecordingStore,
    s3: aws_sdk_s3::Client,
    transcribe: aws_sdk_transcribe::Client,
}

fn tokens(token: &str) -> StaticTokens {
    StaticTokens {
        current: Arc::new(TwilioCredentials::new(local::ACCOUNT_SID, token)),
        previous: None,
    }
}

async fn rig(label: &str, token: &str) -> Rig {
    rig_with_s3(label, token, |b| b).await
}

/// The workers on the emulator; `s3` may add interceptors to the recording worker's client.
async fn rig_with_s3(
    label: &str,
    token: &str,
    s3: impl FnOnce(aws_sdk_s3::config::Builder) -> aws_sdk_s3::config::Builder,
) -> Rig {
    let aws = aws(label).await;
    let media = MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN)
        .await
        .unwrap();
    let hosts = MediaHosts::with_local(media.host_port());
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws.sdk);
    let store = DynamoRecordingStore::new(dynamodb, &aws.resources.calls_table);
    let transcribe = aws_sdk_transcribe::Client::new(&aws.sdk);
    let worker_s3 = aws_sdk_s3::Client::from_conf(
        s3(aws_sdk_s3::config::Builder::from(&aws.sdk).force_path_style(true)).build(),
    );
    let worker = RecordingWorker {
        http: media_client(&hosts),
        hosts,
        tokens: tokens(token),
        s3: worker_s3,
        store: store.clone(),
        transcriber: Some(Transcriber::new(transcribe.clone(), "en-US", false)),
        settings: ArchiveSettings {
            bucket: aws.resources.recordings_bucket.clone(),
            kms_key_id: Some(aws.resources.recordings_kms_key.clone()),
            format: MediaFormat::Wav,
            channels: None,
            delete_from_twilio: true,
        },
        // Quick in tests; the shape (exponential, bounded, jittered) is the deployed one.
        fetch_backoff: ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_times(3)
            .with_jitter(),
        pace: Default::default(),
    };
    let s3 = voicehooks::aws::s3_client(&aws.sdk);
    let transcripts = TranscriptWorker {
        transcriber: Transcriber::new(transcribe.clone(), "en-US", false),
        s3: s3.clone(),
        store: store.clone(),
        bucket: aws.resources.recordings_bucket.clone(),
        pace: Default::default(),
    };
    Rig {
        aws,
        media,
        worker,
        transcripts,
        store,
        s3,
        transcribe,
    }
}

impl Rig {
    /// A `recording.status` envelope for `sid`, its media on the stand-in.
    fn completed(&self, sid: &str, channels: u16) -> String {
        self.completed_at(sid, channels, &self.media.recording_url(sid))
    }

    fn completed_at(&self, sid: &str, channels: u16, url: &str) -> String {
        let params = Params::new(
            [
                ("AccountSid", local::ACCOUNT_SID),
                ("CallSid", CALL),
                ("RecordingSid", sid),
                ("RecordingUrl", url),
                ("RecordingStatus", "completed"),
                ("RecordingDuration", "12"),
                ("RecordingChannels", if channels == 2 { "2" } else { "1" }),
                ("RecordingSource", "DialVerb"),
                ("RecordingStartTime", "Mon, 23 Nov 2026 09:59:40 +0000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let mut envelope =
            Envelope::recording_status(&RecordingCallback::parse(&params).unwrap(), &params, None);
        envelope.received_at = RECEIVED_AT.into();
        envelope.to_json()
    }

    fn key(&self, sid: &str) -> RecordingKey {
        RecordingKey::new(
            local::ACCOUNT_SID,
            CALL,
            sid,
            Some("Mon, 23 Nov 2026 09:59:40 +0000"),
            RECEIVED_AT,
        )
    }

    async fn stored(&self, sid: &str) -> RecordingRecord {
        self.store.get(CALL, sid).await.unwrap().unwrap_or_default()
    }

    async fn objects(&self) -> Vec<String> {
        self.s3
            .list_objects_v2()
            .bucket(&self.aws.resources.recordings_bucket)
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    async fn jobs(&self) -> Vec<String> {
        self.transcribe
            .list_transcription_jobs()
            .send()
            .await
            .unwrap()
            .transcription_job_summaries()
            .iter()
            .filter_map(|j| j.transcription_job_name().map(str::to_owned))
            .collect()
    }

    async fn open_uploads(&self) -> usize {
        self.s3
            .list_multipart_uploads()
            .bucket(&self.aws.resources.recordings_bucket)
            .send()
            .await
            .unwrap()
            .uploads()
            .len()
    }

    fn settler(&self) -> Settler {
        Settler::new(
            aws_sdk_sqs::Client::new(&self.aws.sdk),
            &QueueSettings {
                queue_url: self.aws.resources.recording.url.clone(),
                dead_letter_queue_url: self.aws.resources.recording.dlq_url.clone(),
                retry_base: Duration::from_secs(30),
                max_receives: self.aws.resources.max_receive_count,
            },
            "recording-worker",
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_recording_is_archived_byte_exact_deleted_from_twilio_and_transcribed() {
    let rig = rig("rec-archive", local::AUTH_TOKEN).await;
    let sid = recording_sid(1);
    rig.media.add(&sid, Recording::new(12, 2));
    let (bytes, sha256) = rig.media.expected(&sid).unwrap();

    assert_eq!(
        rig.worker
            .handle(&rig.completed(&sid, 2), with_time())
            .await,
        Disposition::Done
    );

    let key = rig.key(&sid).audio("wav");
    let object = rig
        .s3
        .head_object()
        .bucket(&rig.aws.resources.recordings_bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(object.content_length, Some(bytes as i64));
    assert_eq!(object.content_type.as_deref(), Some("audio/x-wav"));
    assert_eq!(
        object.server_side_encryption.as_ref().map(|e| e.as_str()),
        Some("aws:kms")
    );
    assert_eq!(
        object.ssekms_key_id.as_deref(),
        Some(rig.aws.resources.recordings_kms_key.as_str())
    );
    let metadata = object.metadata.unwrap();
    assert_eq!(metadata["call-sid"], CALL);
    assert_eq!(metadata["recording-sid"], sid);
    assert_eq!(metadata["duration"], "12");
    assert_eq!(metadata["channels"], "2");
    assert_eq!(metadata["source"], "DialVerb");
    // Byte-exact: the whole object hashes to the source's SHA-256.
    let body = rig
        .s3
        .get_object()
        .bucket(&rig.aws.resources.recordings_bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)),
        sha256
    );

    let stored = rig.stored(&sid).await;
    assert!(stored.is_archived());
    assert_eq!(stored.bytes, Some(bytes));
    assert_eq!(stored.sha256.as_deref(), Some(sha256.as_str()));
    assert_eq!(stored.s3_key.as_deref(), Some(key.as_str()));
    assert!(stored.deleted_from_twilio && rig.media.deleted(&sid));
    assert_eq!(stored.transcription_job.as_deref(), Some(sid.as_str()));
    assert_eq!(stored.transcription_status.as_deref(), Some("IN_PROGRESS"));

    let job = rig
        .transcribe
        .get_transcription_job()
        .transcription_job_name(&sid)
        .send()
        .await
        .unwrap()
        .transcription_job
        .unwrap();
    assert_eq!(
        job.media.unwrap().media_file_uri.unwrap(),
        format!("s3://{}/{key}", rig.aws.resources.recordings_bucket)
    );
    assert_eq!(
        job.settings.unwrap().channel_identification,
        Some(true),
        "dual-channel audio is transcribed per channel"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twilios_statuses_are_recorded_and_never_undo_an_archive() {
    let rig = rig("rec-states", local::AUTH_TOKEN).await;
    let sid = recording_sid(15);
    rig.media.add(&sid, Recording::new(2, 1));
    let status = |status: &str| {
        rig.completed(&sid, 1).replace(
            "\"RecordingStatus\",\"completed\"",
            &format!("\"RecordingStatus\",\"{status}\""),
        )
    };
    assert_eq!(
        rig.worker.handle(&status("in-progress"), with_time()).await,
        Disposition::Done
    );
    assert_eq!(rig.stored(&sid).await.state.as_deref(), Some("in-progress"));
    assert_eq!(rig.media.requests(&sid), 0, "in-progress is recorded only");
    assert_eq!(
        rig.worker
            .handle(&rig.completed(&sid, 1), with_time())
            .await,
        Disposition::Done
    );
    // Late or odd statuses after the archive change nothing.
    for late in ["in-progress", "absent", "failed"] {
        assert_eq!(
            rig.worker.handle(&status(late), with_time()).await,
            Disposition::Done
        );
        assert!(rig.stored(&sid).await.is_archived(), "{late}");
    }
    let absent = recording_sid(16);
    let event = rig.completed(&absent, 1).replace(
        "\"RecordingStatus\",\"completed\"",
        "\"RecordingStatus\",\"absent\"",
    );
    assert_eq!(
        rig.worker.handle(&event, with_time()).await,
        Disposition::Done
    );
    assert_eq!(rig.stored(&absent).await.state.as_deref(), Some("absent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_event_makes_no_second_download_object_or_job() {
    let rig = rig("rec-redelivery", local::AUTH_TOKEN).await;
    let sid = recording_sid(2);
    rig.media.add(&sid, Recording::new(3, 1));
    let event = rig.completed(&sid, 1);
    for _ in 0..3 {
        assert_eq!(
            rig.worker.handle(&event, with_time()).await,
            Disposition::Done
        );
    }
    // Twilio retrying the webhook makes a new envelope for the same recording.
    let mut retried = Envelope::from_json(&event).unwrap();
    retried.received_at = "2026-11-23T10:00:09Z".into();
    assert_eq!(
        rig.worker.handle(&retried.to_json(), with_time()).await,
        Disposition::Done
    );

    assert_eq!(rig.objects().await, [rig.key(&sid).audio("wav")]);
    assert_eq!(rig.jobs().await, [sid.as_str()]);
    assert_eq!(
        rig.media.requests(&sid),
        2,
        "one download and one delete, whatever the redeliveries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn media_not_ready_is_retried_then_archived() {
    let rig = rig("rec-not-ready", local::AUTH_TOKEN).await;
    // Ready after two 404s: inside one invocation's backoff.
    let soon = recording_sid(3);
    rig.media
        .add(&soon, Recording::new(2, 1).with_faults(&[404, 404]));
    assert_eq!(
        rig.worker
            .handle(&rig.completed(&soon, 1), with_time())
            .await,
        Disposition::Done
    );
    assert!(rig.stored(&soon).await.is_archived());

    // Not ready for longer than the invocation waits: retried later, not failed.
    let later = recording_sid(4);
    rig.media
        .add(&later, Recording::new(2, 1).with_faults(&[404; 6]));
    let event = rig.completed(&later, 1);
    let first = rig.worker.handle(&event, with_time()).await;
    assert!(
        matches!(&first, Disposition::Retry { reason, after: None } if reason.contains("not ready")),
        "{first:?}"
    );
    assert!(!rig.stored(&later).await.is_archived());
    assert_eq!(rig.open_uploads().await, 0);
    // Settled, the retry is noted on the recording for `voicectl call`; archived, it is gone.
    let message = QueuedMessage {
        message_id: "m-later",
        body: &event,
        receipt_handle: "not-a-real-handle",
        receive_count: 2,
        ..QueuedMessage::default()
    };
    rig.settler()
        .settle_all_noting(&[(&message, first.clone())], &rig.worker)
        .await;
    let trouble = rig
        .stored(&later)
        .await
        .trouble
        .expect("the retry is noted");
    assert_eq!(
        (
            trouble.state.as_str(),
            trouble.receive,
            trouble.max_receives
        ),
        (
            "retrying",
            Some(2),
            Some(rig.aws.resources.max_receive_count)
        )
    );
    assert!(trouble.reason.contains("not ready") && trouble.next_at.is_some());
    assert_eq!(
        rig.worker.handle(&event, with_time()).await,
        Disposition::Done
    );
    let archived = rig.stored(&later).await;
    assert!(archived.is_archived() && archived.trouble.is_none());
    assert_eq!(
        rig.media.requests(&later),
        6 + 1 + 1,
        "6 × 404, the media, the delete"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_with_retry_after() {
    let rig = rig("rec-429", local::AUTH_TOKEN).await;
    let sid = recording_sid(5);
    rig.media
        .add(&sid, Recording::new(2, 1).with_faults(&[429]));
    let started = Instant::now();
    assert_eq!(
        rig.worker
            .handle(&rig.completed(&sid, 1), with_time())
            .await,
        Disposition::Done
    );
    // The stand-in says Retry-After: 1, which wins over the 20 ms backoff.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(rig.stored(&sid).await.is_archived());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_go_to_the_dlq_once_with_the_reason() {
    let rig = rig("rec-401", "a-wrong-token-0000000000000000000").await;
    let sid = recording_sid(6);
    rig.media.add(&sid, Recording::new(2, 1));
    let body = rig.completed(&sid, 1);
    let disposition = rig.worker.handle(&body, with_time()).await;
    assert!(
        matches!(&disposition, Disposition::DeadLetter { reason } if reason.contains("401")),
        "{disposition:?}"
    );
    assert_eq!(rig.media.requests(&sid), 1, "no retry loop against Twilio");
    assert!(rig.objects().await.is_empty());

    // Settled: the message is in the DLQ with why, and reported done on the source queue.
    let message = QueuedMessage {
        message_id: "m-1",
        body: &body,
        receipt_handle: "unused",
        receive_count: 1,
        ..QueuedMessage::default()
    };
    assert!(!rig.settler().settle(&message, &disposition).await);
    let dead = aws_sdk_sqs::Client::new(&rig.aws.sdk)
        .receive_message()
        .queue_url(&rig.aws.resources.recording.dlq_url)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some(body.as_str()));
    let attributes = dead[0].message_attributes().unwrap();
    assert!(
        attributes["failure_reason"]
            .string_value()
            .unwrap()
            .contains("credentials")
    );
    assert_eq!(
        attributes["failed_by"].string_value(),
        Some("recording-worker")
    );
    assert_eq!(attributes["call_sid"].string_value(), Some(CALL));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_url_off_the_allow_list_is_refused_without_a_request() {
    let rig = rig("rec-ssrf", local::AUTH_TOKEN).await;
    let sid = recording_sid(7);
    rig.media.add(&sid, Recording::new(2, 1));
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/role".to_owned(),
        format!(
            "https://evil.example/2010-04-01/Accounts/{}/Recordings/{sid}",
            local::ACCOUNT_SID
        ),
        // The stand-in's own media, but on another port than the one configured.
        rig.media.recording_url(&sid).replace(
            &rig.media.host_port(),
            &format!("127.0.0.1:{}", rig.media.addr.port() + 1),
        ),
    ] {
        let disposition = rig
            .worker
            .handle(&rig.completed_at(&sid, 1, &url), with_time())
            .await;
        assert!(
            matches!(&disposition, Disposition::DeadLetter { reason } if reason.contains("refused")),
            "{url}: {disposition:?}"
        );
    }
    assert_eq!(rig.media.requests(&sid), 0);
    assert!(rig.objects().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_failing_mid_upload_leaves_nothing_visible_and_the_message_is_retried() {
    let rig = rig_with_s3("rec-s3-fault", local::AUTH_TOKEN, |b| {
        b.interceptor(FailOperation::nth("UploadPart", 2))
            // No SDK retry, so the injected failure reaches the worker.
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
    })
    .await;
    let sid = recording_sid(8);
    // 300 s of dual-channel audio: 9.6 MB, two parts.
    rig.media.add(&sid, Recording::new(300, 2));
    let event = rig.completed(&sid, 2);
    let first = rig.worker.handle(&event, with_time()).await;
    assert!(
        matches!(&first, Disposition::Retry { reason, .. } if reason.contains("UploadPart")),
        "{first:?}"
    );
    assert!(rig.objects().await.is_empty(), "no partial object visible");
    assert_eq!(rig.open_uploads().await, 0, "the upload was aborted");
    assert!(!rig.stored(&sid).await.is_archived());
    assert!(!rig.media.deleted(&sid), "Twilio's copy is kept");
    assert!(rig.jobs().await.is_empty());

    // The retry (the fault was one-off) archives it whole.
    assert_eq!(
        rig.worker.handle(&event, with_time()).await,
        Disposition::Done
    );
    let stored = rig.stored(&sid).await;
    assert_eq!(
        (stored.bytes, stored.sha256),
        rig.media
            .expected(&sid)
            .map(|(b, s)| (Some(b), Some(s)))
            .unwrap()
    );
    assert_eq!(rig.objects().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_already_exists_is_a_harmless_conflict() {
    let rig = rig("rec-conflict", local::AUTH_TOKEN).await;
    let sid = recording_sid(9);
    rig.media.add(&sid, Recording::new(2, 1));
    // A crash after the start, before the item said so: the job exists, the item does not know.
    let key = rig.key(&sid);
    let transcriber = Transcriber::new(rig.transcribe.clone(), "en-US", false);
    let request = TranscriptionRequest {
        job_name: &sid,
        bucket: &rig.aws.resources.recordings_bucket,
        media_key: &key.audio("wav"),
        output_key: &key.transcript(),
        format: MediaFormat::Wav,
        channels: Some(1),
    };
    assert_eq!(
        transcriber.start(&request).await.unwrap(),
        JobStart::Started
    );
    assert_eq!(
        transcriber.start(&request).await.unwrap(),
        JobStart::AlreadyExists
    );

    assert_eq!(
        rig.worker
            .handle(&rig.completed(&sid, 1), with_time())
            .await,
        Disposition::Done
    );
    assert_eq!(rig.jobs().await, [sid.as_str()]);
    assert_eq!(
        rig.stored(&sid).await.transcription_job.as_deref(),
        Some(sid.as_str())
    );
}

/// Runs the emulated end of Transcribe and hands its events to the transcript worker.
async fn finish_jobs(rig: &Rig, expected: usize) {
    let completer = TranscribeCompleter::start(
        &rig.aws.sdk,
        &rig.aws.resources.recordings_bucket,
        &rig.aws.resources.transcript.url,
    );
    let sqs = aws_sdk_sqs::Client::new(&rig.aws.sdk);
    let mut handled = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while handled < expected {
        assert!(Instant::now() < deadline, "no state-change events");
        let messages = sqs
            .receive_message()
            .queue_url(&rig.aws.resources.transcript.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        for message in messages {
            assert_eq!(
                rig.transcripts.handle(message.body().unwrap()).await,
                Disposition::Done
            );
            handled += 1;
        }
    }
    drop(completer);
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_jobs_store_the_transcript_per_channel_and_failed_ones_their_reason() {
    let rig = rig("rec-transcripts", local::AUTH_TOKEN).await;
    let (dual, mono, broken) = (recording_sid(10), recording_sid(11), recording_sid(12));
    rig.media.add(&dual, Recording::new(2, 2));
    rig.media.add(&mono, Recording::new(2, 1));
    rig.media.add(&broken, Recording::new(2, 1).not_audio());
    for (sid, channels) in [(&dual, 2), (&mono, 1), (&broken, 1)] {
        assert_eq!(
            rig.worker
                .handle(&rig.completed(sid, channels), with_time())
                .await,
            Disposition::Done
        );
    }
    finish_jobs(&rig, 3).await;

    let dual = rig.stored(&dual).await;
    assert_eq!(dual.transcription_status.as_deref(), Some("COMPLETED"));
    assert!(dual.transcript_text.unwrap().contains("caller"));
    let roles: Vec<&str> = dual
        .transcript_channels
        .iter()
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(roles, ["agent", "caller"]);
    assert!(
        dual.transcript_channels[0]
            .1
            .starts_with("This is the agent")
    );

    let mono = rig.stored(&mono).await;
    assert_eq!(mono.transcription_status.as_deref(), Some("COMPLETED"));
    assert!(mono.transcript_channels.is_empty());

    let broken = rig.stored(&broken).await;
    assert!(
        broken.is_archived(),
        "the audio is kept whatever Transcribe says"
    );
    assert_eq!(broken.transcription_status.as_deref(), Some("FAILED"));
    assert_eq!(broken.transcription_failure.as_deref(), Some(NOT_AUDIO));

    // A redelivered event stores the same again; a job of someone else's is dead-lettered.
    let event = format!(
        r#"{{"source":"aws.transcribe","detail-type":"Transcribe Job State Change","detail":{{"TranscriptionJobName":"{}","TranscriptionJobStatus":"COMPLETED"}}}}"#,
        mono.recording_sid
    );
    assert_eq!(rig.transcripts.handle(&event).await, Disposition::Done);
    assert_eq!(
        rig.stored(&mono.recording_sid).await.transcript_text,
        mono.transcript_text
    );
    assert!(matches!(
        rig.transcripts
            .handle(&event.replace(&mono.recording_sid, "someone-elses-job"))
            .await,
        Disposition::Retry { .. } | Disposition::DeadLetter { .. }
    ));
    assert!(matches!(
        rig.transcripts.handle("not json").await,
        Disposition::DeadLetter { .. }
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn twilios_own_transcription_lands_on_the_recording() {
    let rig = rig("rec-twilio-transcription", local::AUTH_TOKEN).await;
    let sid = recording_sid(13);
    let params = Params::new(
        [
            ("AccountSid", local::ACCOUNT_SID),
            ("CallSid", CALL),
            ("RecordingSid", sid.as_str()),
            ("TranscriptionSid", "TR0000000000000000000000000000000d"),
            ("TranscriptionStatus", "completed"),
            ("TranscriptionText", "Please call me back."),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    let envelope = Envelope::transcription(
        &TranscriptionCallback::parse(&params).unwrap(),
        &params,
        None,
    );
    for _ in 0..2 {
        assert_eq!(
            rig.transcripts.handle(&envelope.to_json()).await,
            Disposition::Done
        );
    }
    let stored = rig.stored(&sid).await;
    assert_eq!(
        stored.twilio_transcription_status.as_deref(),
        Some("completed")
    );
    assert_eq!(
        stored.twilio_transcription_text.as_deref(),
        Some("Please call me back.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_is_delayed_by_its_visibility_timeout() {
    let rig = rig("rec-retry-delay", local::AUTH_TOKEN).await;
    let sqs = aws_sdk_sqs::Client::new(&rig.aws.sdk);
    let queue = &rig.aws.resources.recording.url;
    sqs.send_message()
        .queue_url(queue)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(queue)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    let message = QueuedMessage {
        message_id: received[0].message_id().unwrap(),
        body: "{}",
        receipt_handle: received[0].receipt_handle().unwrap(),
        receive_count: 1,
        ..QueuedMessage::default()
    };
    assert!(
        rig.settler()
            .settle(&message, &Disposition::retry("media not ready"))
            .await
    );
    // Without the delay it would be back after its 1 s receive timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again = sqs
        .receive_message()
        .queue_url(queue)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(
        again.is_empty(),
        "the retry waits its backoff (≥ 30 s base here)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_callback_goes_through_the_real_functions_to_s3_and_a_transcript() {
    let stack = LocalStack::start(StackOptions {
        label: "rec-pipeline".into(),
        ..Default::default()
    })
    .await
    .expect("the local stack starts (run `make test`, which builds the functions first)");
    let sid = recording_sid(14);
    stack.media.add(&sid, Recording::new(5, 2));
    let params = recording_params(&sid, &stack.media.recording_url(&sid), 5);
    let (public, target) = stack
        .routes()
        .into_iter()
        .find(|(p, _)| p.ends_with("/twilio/recording"))
        .unwrap();
    // A forged callback is refused and queues nothing; the signed one, delivered again after
    // it was handled (Twilio's retry), is archived once.
    assert_eq!(
        post_form(&target, &public, &params, Some("not-the-token"))
            .await
            .status(),
        403
    );
    for _ in 0..2 {
        assert_eq!(
            post_form(&target, &public, &params, Some(local::AUTH_TOKEN))
                .await
                .status(),
            204
        );
        stack
            .wait_until_drained(Duration::from_secs(60))
            .await
            .unwrap();
    }
    let stored = archived_byte_exact(&stack, &sid).await;
    assert!(stored.deleted_from_twilio);
    assert_eq!(stored.transcription_status.as_deref(), Some("COMPLETED"));
    assert_eq!(stored.transcript_channels.len(), 2);
    assert_eq!(stack.media.requests(&sid), 2, "one download, one delete");
    assert_eq!(
        stack
            .queue_depth(&stack.resources.recording.dlq_url)
            .await
            .unwrap(),
        0
    );
    stack.stop().await;
}

/// The stack's item for `sid`, asserted archived with the stand-in's exact size and SHA-256.
async fn archived_byte_exact(
    stack: &LocalStack,
    sid: &str,
) -> voicehooks::recording::RecordingRecord {
    let store = DynamoRecordingStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        &stack.resources.calls_table,
    );
    let stored = store.get(CALL, sid).await.unwrap().unwrap();
    let (bytes, sha256) = stack.media.expected(sid).unwrap();
    assert!(stored.is_archived(), "{stored:?}");
    assert_eq!(stored.bytes, Some(bytes));
    assert_eq!(stored.sha256.as_deref(), Some(sha256.as_str()));
    stored
}

/// A completed recording's callback params, as Twilio posts them.
fn recording_params(sid: &str, url: &str, seconds: u32) -> Params {
    let seconds = seconds.to_string();
    Params::new(
        [
            ("AccountSid", local::ACCOUNT_SID),
            ("CallSid", CALL),
            ("RecordingSid", sid),
            ("RecordingUrl", url),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", seconds.as_str()),
            ("RecordingChannels", "2"),
            ("RecordingSource", "DialVerb"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    )
}

/// A signed recording callback for `sid` at `url`, posted to the stack's recording webhook.
async fn post_recording(stack: &LocalStack, sid: &str, url: &str, seconds: u32) {
    let params = recording_params(sid, url, seconds);
    let (public, target) = stack
        .routes()
        .into_iter()
        .find(|(p, _)| p.ends_with("/twilio/recording"))
        .unwrap();
    let response = post_form(&target, &public, &params, Some(local::AUTH_TOKEN)).await;
    assert_eq!(response.status(), 204);
}

/// The DLQ's messages: (RecordingSid, failure reason).
async fn dead_letters(stack: &LocalStack) -> Vec<(String, String)> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let mut letters = Vec::new();
    for _ in 0..5 {
        let received = sqs
            .receive_message()
            .queue_url(&stack.resources.recording.dlq_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        for m in received.messages() {
            let envelope = Envelope::from_json(m.body().unwrap()).unwrap();
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("failure_reason"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            letters.push((
                envelope.params.get("RecordingSid").unwrap().to_owned(),
                reason,
            ));
        }
    }
    letters.sort();
    letters
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_callback_naming_any_other_resource_sends_no_request_and_rests_in_the_dlq() {
    let stack = LocalStack::start(StackOptions {
        label: "rec-hostile".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = format!(
        "http://{}/2010-04-01/Accounts/{}",
        stack.media.host_port(),
        local::ACCOUNT_SID
    );
    let other = recording_sid(0x77);
    stack.media.add(&other, Recording::new(2, 2));
    let number = "PN0123456789abcdef0123456789abcdef";
    let hostile = [
        (
            recording_sid(0x71),
            format!("{base}/IncomingPhoneNumbers/{number}?x="),
        ),
        (
            recording_sid(0x72),
            format!("{base}/Recordings/../IncomingPhoneNumbers/{number}"),
        ),
        // Another recording of the account: fetched and deleted under this one's name.
        (recording_sid(0x73), format!("{base}/Recordings/{other}")),
    ];
    for (sid, url) in &hostile {
        post_recording(&stack, sid, url, 2).await;
    }
    // A redirect off the allow-list is refused too, at the redirect, not retried.
    let redirected = recording_sid(0x74);
    stack.media.add(
        &redirected,
        Recording::new(2, 2)
            .with_faults(&[302])
            .with_redirect("https://169.254.169.254/latest/meta-data/"),
    );
    post_recording(
        &stack,
        &redirected,
        &stack.media.recording_url(&redirected),
        2,
    )
    .await;
    stack
        .wait_until_drained(Duration::from_secs(60))
        .await
        .unwrap();

    let letters = dead_letters(&stack).await;
    assert_eq!(letters.len(), 4, "{letters:#?}");
    for (sid, reason) in &letters {
        if *sid == redirected {
            assert!(reason.contains("refused to follow a redirect"), "{reason}");
        } else {
            assert!(
                reason.contains("refused to fetch") && reason.contains("may only name"),
                "{sid}: {reason}"
            );
        }
    }
    // Not one request went anywhere but the redirected recording's one fetch.
    assert_eq!(
        stack.media.requests(&other),
        0,
        "the other recording untouched"
    );
    assert_eq!(stack.media.all_requests(), 1);
    assert!(!stack.media.deleted(&other));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_retry_after_neither_panics_the_worker_nor_makes_it_loop_hot() {
    let stack = LocalStack::start(StackOptions {
        label: "rec-retry-after".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let sid = recording_sid(0x75);
    stack.media.add(
        &sid,
        Recording::new(2, 2)
            .with_faults(&[429])
            .with_retry_after("18446744073709551615"),
    );
    post_recording(&stack, &sid, &stack.media.recording_url(&sid), 2).await;
    // Taken, refused with the huge Retry-After, and put back with the longest delay SQS
    // allows: in flight (hidden), not lost, not dead-lettered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.media.requests(&sid) == 0 {
        assert!(Instant::now() < deadline, "never fetched");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack
            .queue_depth(&stack.resources.recording.url)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        stack
            .queue_depth(&stack.resources.recording.dlq_url)
            .await
            .unwrap(),
        0
    );
    assert_eq!(stack.media.requests(&sid), 1, "not a hot loop");
    let log = recording_worker_log(&stack);
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("rate limited"), "the reason is logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_longer_than_one_invocation_resumes_its_upload_until_archived() {
    // Invocations of 6 s: a 41.6 MB recording cannot be archived in one.
    let stack = LocalStack::start(StackOptions {
        label: "rec-resume".into(),
        timeouts: vec![(
            devstack::local_stack::RECORDING_WORKER,
            Duration::from_secs(6),
        )],
        ..Default::default()
    })
    .await
    .unwrap();
    let sid = recording_sid(0x76);
    let seconds = 1300; // 8 kHz, 16-bit, 2 channels: 41.6 MB, 22 minutes
    stack.media.add(&sid, Recording::new(seconds, 2));
    post_recording(&stack, &sid, &stack.media.recording_url(&sid), seconds).await;
    stack
        .wait_until_drained(Duration::from_secs(300))
        .await
        .unwrap();

    let stored = archived_byte_exact(&stack, &sid).await;
    assert!(
        stored.upload.is_none(),
        "the progress is cleared once archived"
    );
    // It took several invocations, each resuming where the last stopped (Range requests).
    let continued = recording_worker_log(&stack)
        .matches("\"outcome\":\"continue\"")
        .count();
    assert!(continued >= 2, "{continued} continuations");
    assert!(
        stack.media.requests(&sid) as usize > continued,
        "one fetch per invocation"
    );
    let s3 = voicehooks::aws::s3_client(&stack.sdk);
    let uploads = s3
        .list_multipart_uploads()
        .bucket(&stack.resources.recordings_bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "no upload left open");
    let dlq = stack
        .queue_depth(&stack.resources.recording.dlq_url)
        .await
        .unwrap();
    assert_eq!(dlq, 0, "the resumes never counted as failed receives");
    // Twenty-two minutes of two people talking is more transcript than the item keeps: a
    // preview, and the pointer to Transcribe's whole document in S3.
    assert_eq!(stored.transcription_status.as_deref(), Some("COMPLETED"));
    assert!(
        stored.transcript_truncated,
        "{:?}",
        stored.transcript_text.as_ref().map(String::len)
    );
    let preview = stored.transcript_text.as_deref().unwrap();
    assert!(preview.chars().count() <= voicehooks::recording::TRANSCRIPT_PREVIEW_CHARS);
    assert!(preview.contains(&sid));
    assert!(stored.transcript_channels.is_empty());
    let document_key = stored.transcript_s3_key.clone().unwrap();
    let document = s3
        .get_object()
        .bucket(&stack.resources.recordings_bucket)
        .key(&document_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(document.len() > voicehooks::recording::INLINE_TRANSCRIPT_BYTES);
    let item = voicehooks_tests::stored_item(
        &stack.sdk,
        &stack.resources.calls_table,
        (&format!("CALL#{CALL}"), &format!("RECORDING#{sid}")),
    )
    .await;
    let size = voicehooks_tests::item_size(&item);
    assert!(size < 16 * 1024, "the recording's item is {size} bytes");
    println!(
        "{} MB archived over {} invocations; transcript document {} KB, item {size} bytes",
        stored.bytes.unwrap_or_default() / 1_000_000,
        continued + 1,
        document.len() / 1024
    );
}

/// Every recording-worker instance's log: it runs its mapping's MaximumConcurrency of them, and
/// any one may take a batch.
fn recording_worker_log(stack: &LocalStack) -> String {
    voicehooks_tests::instance_logs(&stack.log_dir, "recording-worker")
}
