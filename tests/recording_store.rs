//! The two recording stores held to the same rules: one story of a recording's life, played
//! on DynamoDB (the emulator) and in memory, with the same answer asserted at every step and
//! the same records at the end. What the memory store lets a test skip is the emulator, never
//! a rule.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use voicehooks::recording::media::{Archived, PartDone, UploadProgress};
use voicehooks::recording::{
    DynamoRecordingStore, INLINE_TRANSCRIPT_BYTES, MemoryRecordingStore, RecordingRecord,
    RecordingRef, RecordingStore, TRANSCRIPT_PREVIEW_CHARS, TranscriptOutcome, Trouble, epoch_ms,
};
use voicehooks::twilio::RecordingStatus::{Absent, Completed, InProgress};
use voicehooks_tests::{aws, call_sid};

fn recording<'a>(call_sid: &'a str, recording_sid: &'a str) -> RecordingRef<'a> {
    RecordingRef {
        account_sid: "AC00000000000000000000000000000000",
        call_sid,
        recording_sid,
        duration_secs: Some(42),
        channels: Some(2),
        source: Some("RecordVerb"),
    }
}

fn archived(key: &str) -> Archived {
    Archived {
        bucket: "recordings".into(),
        key: key.into(),
        bytes: 1234,
        sha256: "ab".repeat(32),
        parts: 1,
    }
}

fn trouble(state: &str) -> Trouble {
    Trouble {
        state: state.into(),
        reason: "media not ready (404)".into(),
        receive: Some(1),
        max_receives: Some(5),
        next_at: Some("2026-12-05T19:00:00Z".into()),
        at: "2026-12-05T18:59:00Z".into(),
    }
}

/// A recording's life, each step's answer asserted: what any [`RecordingStore`] must do.
/// Returns the call's recordings as the store keeps them at the end.
async fn life_of_a_call<S: RecordingStore>(store: &S, call: &str) -> Vec<RecordingRecord> {
    let (re1, re2, re3) = ("RE1", "RE2", "RE3");
    let one = recording(call, re1);

    // Twilio's statuses: in-progress only on a new recording; never backwards.
    assert!(store.record_status(&one, InProgress, None).await.unwrap());
    assert!(!store.record_status(&one, InProgress, None).await.unwrap());
    assert!(
        store
            .record_status(&one, Completed, Some("0"))
            .await
            .unwrap()
    );

    // One invocation holds the download; another is turned away until it lets go.
    let later = epoch_ms() + 60_000;
    assert!(store.take_lease(&one, later).await.unwrap());
    assert!(!store.take_lease(&one, later).await.unwrap());
    let progress = UploadProgress {
        upload_id: "upload-1".into(),
        bytes: 8 << 20,
        parts: vec![PartDone {
            number: 1,
            etag: Some("\"e1\"".into()),
            sha256: "c2hhMjU2".into(),
        }],
        hash_state: "c3RhdGU=".into(),
    };
    store.save_progress(&one, Some(&progress)).await.unwrap();
    let saved = store.get(call, re1).await.unwrap().unwrap();
    assert_eq!(saved.upload, Some(progress));
    assert_eq!(saved.lease_until_ms, Some(0), "saving releases the lease");
    assert!(store.take_lease(&one, later).await.unwrap());
    store
        .record_trouble(&one, &trouble("retrying"))
        .await
        .unwrap();
    assert!(
        store
            .get(call, re1)
            .await
            .unwrap()
            .unwrap()
            .trouble
            .is_some()
    );

    // Archived: the upload, the trouble and the lease are gone; late statuses change nothing.
    store
        .record_archived(&one, &archived("calls/one.wav"))
        .await
        .unwrap();
    assert!(
        !store
            .record_status(&one, Absent, Some("16102"))
            .await
            .unwrap()
    );
    assert!(!store.record_status(&one, InProgress, None).await.unwrap());
    store.record_deleted_from_twilio(&one).await.unwrap();

    // Transcription: the job's start never overwrites a result that beat it.
    store
        .record_transcript(
            (call, re1),
            "job-1",
            &TranscriptOutcome::Completed {
                text: "hello there".into(),
                channels: vec![
                    ("caller".into(), "hello".into()),
                    ("agent".into(), "there".into()),
                ],
            },
            "transcripts/job-1.json",
        )
        .await
        .unwrap();
    store
        .record_transcription_started(&one, "job-1")
        .await
        .unwrap();
    store
        .record_twilio_transcription(&one, "TR1", "completed", Some("hello there"))
        .await
        .unwrap();

    // A second recording: absent (Twilio's 16102), a transcript too long for the item.
    let two = recording(call, re2);
    assert!(
        store
            .record_status(&two, Absent, Some("16102"))
            .await
            .unwrap()
    );
    assert!(!store.record_status(&two, InProgress, None).await.unwrap());
    store
        .record_transcription_started(&two, "job-2")
        .await
        .unwrap();
    let long = "word ".repeat(INLINE_TRANSCRIPT_BYTES / 4);
    store
        .record_transcript(
            (call, re2),
            "job-2",
            &TranscriptOutcome::Completed {
                text: long,
                channels: vec![("caller".into(), "word".into())],
            },
            "transcripts/job-2.json",
        )
        .await
        .unwrap();

    // A third: its lease taken, its job failed, its trouble dead-lettered.
    let three = recording(call, re3);
    assert!(store.take_lease(&three, later).await.unwrap());
    store.save_progress(&three, None).await.unwrap();
    store
        .record_trouble(&three, &trouble("dead-lettered"))
        .await
        .unwrap();
    store
        .record_transcript(
            (call, re3),
            "job-3",
            &TranscriptOutcome::Failed {
                reason: "unsupported media".into(),
            },
            "transcripts/job-3.json",
        )
        .await
        .unwrap();

    assert_eq!(store.get(call, "RE404").await.unwrap(), None);
    let records = store.for_call(call).await.unwrap();
    let sids: Vec<&str> = records.iter().map(|r| r.recording_sid.as_str()).collect();
    assert_eq!(sids, [re1, re2, re3]);

    let [one, two, three] = &records[..] else {
        unreachable!()
    };
    assert!(one.is_archived() && one.deleted_from_twilio);
    assert_eq!((one.trouble.as_ref(), one.upload.as_ref()), (None, None));
    assert_eq!(one.transcription_status.as_deref(), Some("COMPLETED"));
    assert_eq!(one.transcript_channels.len(), 2);
    assert_eq!(
        one.twilio_transcription_text.as_deref(),
        Some("hello there")
    );
    assert_eq!(
        (two.state.as_deref(), two.error_code.as_deref()),
        (Some("absent"), Some("16102"))
    );
    assert!(two.transcript_truncated && two.transcript_channels.is_empty());
    assert_eq!(
        two.transcript_text.as_ref().unwrap().chars().count(),
        TRANSCRIPT_PREVIEW_CHARS
    );
    assert_eq!(three.state, None);
    assert_eq!(three.lease_until_ms, Some(0));
    assert_eq!(three.trouble.as_ref().unwrap().state, "dead-lettered");
    assert_eq!(
        three.transcription_failure.as_deref(),
        Some("unsupported media")
    );
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn both_stores_keep_a_recording_by_the_same_rules() {
    let aws = aws("recording_store").await;
    let dynamodb = DynamoRecordingStore::new(
        aws_sdk_dynamodb::Client::new(&aws.sdk),
        &aws.resources.calls_table,
    );
    let call = call_sid(7001);
    let in_dynamodb = life_of_a_call(&dynamodb, &call).await;
    let in_memory = life_of_a_call(&MemoryRecordingStore::new(), &call).await;
    assert_eq!(in_dynamodb, in_memory);
}
