//! Recording media: fetched from the stand-in the way the worker fetches it from Twilio,
//! streamed into S3 on the emulator. Byte-exact, one object, nothing partial left behind.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use voicectl::media_server::{MediaServer, Recording, wav_chunks, wav_sha256};
use voicehooks::config::local;
use voicehooks::recording::media::{
    self, ArchiveError, ArchiveTarget, BasicAuth, FetchError, MediaHosts,
};
use voicehooks_tests::aws;

const BUCKET: &str = "voicehooks-local-media";

fn auth(token: &str) -> BasicAuth {
    BasicAuth {
        username: local::ACCOUNT_SID.into(),
        password: token.into(),
    }
}

fn target(key: &str) -> ArchiveTarget {
    ArchiveTarget {
        bucket: BUCKET.into(),
        key: key.into(),
        content_type: "audio/x-wav".into(),
        kms_key_id: None,
        metadata: HashMap::from([("recording-sid".to_owned(), "RE1".to_owned())]),
    }
}

async fn s3(aws: &voicehooks_tests::Aws) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&aws.sdk)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    client.create_bucket().bucket(BUCKET).send().await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_is_streamed_into_s3_byte_exact_in_parts() {
    let aws = aws("media-archive").await;
    let s3 = s3(&aws).await;
    let media = MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN)
        .await
        .unwrap();
    // 11 minutes of dual-channel audio: 21 MB, three parts.
    let recording = Recording::new(660, 2);
    media.add("RE1", recording.clone());
    let hosts = MediaHosts::with_local(media.host_port());
    let client = reqwest::Client::new();
    let url = format!("{}.wav", media.recording_url("RE1"));
    let response = media::fetch(&client, &hosts, &url, &auth(local::AUTH_TOKEN), 0)
        .await
        .unwrap();
    let archived = media::archive(&s3, &target("recordings/RE1.wav"), response.bytes_stream())
        .await
        .unwrap();
    assert_eq!(archived.bytes, recording.wav_len());
    assert_eq!(archived.sha256, wav_sha256(&recording, "RE1"));
    assert_eq!(archived.parts, 3);

    let object = s3
        .get_object()
        .bucket(BUCKET)
        .key("recordings/RE1.wav")
        .send()
        .await
        .unwrap();
    assert_eq!(object.metadata().unwrap()["recording-sid"], "RE1");
    assert_eq!(object.content_type(), Some("audio/x-wav"));
    let stored = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(stored.len() as u64, recording.wav_len());
    assert_eq!(hex(&stored), archived.sha256, "S3 holds the same bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_under_one_part_is_one_put_object_with_its_checksum() {
    let aws = aws("media-put").await;
    let s3 = s3(&aws).await;
    // Three minutes of mono audio: 2.9 MB, under the 8 MiB part size.
    let recording = Recording::new(180, 1);
    let chunks: Vec<Bytes> = wav_chunks(&recording, "RE1").collect();
    let bytes = chunks.concat();
    let archived = media::archive(
        &s3,
        &target("recordings/short.wav"),
        futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)),
    )
    .await
    .unwrap();
    assert_eq!(archived.bytes, recording.wav_len());
    assert_eq!(archived.parts, 1);
    assert_eq!(archived.sha256, hex(&bytes));
    // No multipart upload was opened for it.
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let head = s3
        .head_object()
        .bucket(BUCKET)
        .key("recordings/short.wav")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(bytes.len() as i64));
    assert_eq!(head.metadata().unwrap()["recording-sid"], "RE1");

    // A break before the part is full leaves nothing behind either.
    let err = media::archive(
        &s3,
        &target("recordings/broken-short.wav"),
        reset_after_mib(1),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ArchiveError::Source { bytes, .. } if bytes == 1024 * 1024),
        "{err}"
    );
    assert!(
        s3.head_object()
            .bucket(BUCKET)
            .key("recordings/broken-short.wav")
            .send()
            .await
            .is_err()
    );
}

/// S3 checks the checksum a PutObject or UploadPart carries and refuses a mismatch, storing
/// nothing: the emulator must too, or a wrong checksum would pass here and fail on AWS.
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_refuses_a_body_that_does_not_match_its_checksum() {
    use base64::Engine as _;
    let aws = aws("media-bad-digest").await;
    let s3 = s3(&aws).await;
    let digest = |b: &[u8]| {
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b))
    };
    let put = |key: &'static str, checksum: String| {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
            .checksum_sha256(checksum)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"the audio",
            ))
            .send()
    };
    let err = put("bad.wav", digest(b"other audio")).await.unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("BadDigest"),
        "{err:?}"
    );
    assert!(
        s3.head_object()
            .bucket(BUCKET)
            .key("bad.wav")
            .send()
            .await
            .is_err()
    );
    put("good.wav", digest(b"the audio")).await.unwrap();

    let upload = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key("parts.wav")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .send()
        .await
        .unwrap();
    let err = s3
        .upload_part()
        .bucket(BUCKET)
        .key("parts.wav")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .checksum_sha256(digest(b"other audio"))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"the audio",
        ))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("BadDigest"),
        "{err:?}"
    );
}

/// `mib` MiB of media arrive, then the connection to Twilio breaks.
fn reset_after_mib(
    mib: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
    let reset = std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "connection reset by peer",
    );
    futures::stream::iter(
        (0..mib)
            .map(|_| Ok(Bytes::from(vec![7u8; 1024 * 1024])))
            .chain([Err(reset)]),
    )
}

fn hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_failure_is_sorted_by_what_the_worker_should_do() {
    let media = MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN)
        .await
        .unwrap();
    let hosts = MediaHosts::with_local(media.host_port());
    let client = reqwest::Client::new();
    let good = auth(local::AUTH_TOKEN);
    let wav = |sid: &str| format!("{}.wav", media.recording_url(sid));

    media.add("RE404", Recording::new(1, 1).with_faults(&[404, 404]));
    assert_eq!(
        media::fetch(&client, &hosts, &wav("RE404"), &good, 0)
            .await
            .unwrap_err(),
        FetchError::NotReady
    );
    assert_eq!(
        media::fetch(&client, &hosts, &wav("RE404"), &good, 0)
            .await
            .unwrap_err(),
        FetchError::NotReady
    );
    assert!(
        media::fetch(&client, &hosts, &wav("RE404"), &good, 0)
            .await
            .is_ok(),
        "ready on the third try"
    );

    media.add("RE429", Recording::new(1, 1).with_faults(&[429]));
    assert_eq!(
        media::fetch(&client, &hosts, &wav("RE429"), &good, 0)
            .await
            .unwrap_err(),
        FetchError::RateLimited(Some(Duration::from_secs(1)))
    );
    media.add("RE503", Recording::new(1, 1).with_faults(&[503]));
    assert!(matches!(
        media::fetch(&client, &hosts, &wav("RE503"), &good, 0)
            .await
            .unwrap_err(),
        FetchError::Transient(_)
    ));
    media.add("RE401", Recording::new(1, 1));
    assert_eq!(
        media::fetch(&client, &hosts, &wav("RE401"), &auth("wrong-token"), 0)
            .await
            .unwrap_err(),
        FetchError::Credentials(401)
    );

    // A RecordingUrl on any other host is refused before a request is made.
    media.add("RESSRF", Recording::new(1, 1));
    let elsewhere = wav("RESSRF").replace("127.0.0.1", "localhost");
    assert!(matches!(
        media::fetch(&client, &hosts, &elsewhere, &good, 0)
            .await
            .unwrap_err(),
        FetchError::Refused(_)
    ));
    assert!(matches!(
        media::fetch(&client, &MediaHosts::twilio(), &wav("RESSRF"), &good, 0)
            .await
            .unwrap_err(),
        FetchError::Refused(_)
    ));
    assert_eq!(media.requests("RESSRF"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_mid_upload_leaves_no_object_and_no_parts() {
    let aws = aws("media-abort").await;
    let s3 = s3(&aws).await;
    // 10 MiB arrive, then the connection to Twilio breaks.
    let err = media::archive(&s3, &target("recordings/broken.wav"), reset_after_mib(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ArchiveError::Source { bytes, .. } if bytes == 10 * 1024 * 1024),
        "{err}"
    );
    assert!(
        s3.head_object()
            .bucket(BUCKET)
            .key("recordings/broken.wav")
            .send()
            .await
            .is_err()
    );
    let uploads = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "aborted: {:?}",
        uploads.uploads()
    );

    // An S3 failure (the bucket is gone) is reported as one, and aborts too.
    let err = media::archive(
        &s3,
        &ArchiveTarget {
            bucket: "no-such-bucket".into(),
            ..target("x.wav")
        },
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"RIFF"))]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ArchiveError::S3 { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stand_in_deletes_like_twilio() {
    let media = MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN)
        .await
        .unwrap();
    media.add("REDEL", Recording::new(1, 2));
    let client = reqwest::Client::new();
    let delete = || {
        client
            .delete(media.recording_url("REDEL"))
            .basic_auth(local::ACCOUNT_SID, Some(local::AUTH_TOKEN))
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), 204);
    assert!(media.deleted("REDEL"));
    assert_eq!(delete().await.unwrap().status(), 404);
    let hosts = MediaHosts::with_local(media.host_port());
    let url = format!("{}.wav", media.recording_url("REDEL"));
    assert_eq!(
        media::fetch(&client, &hosts, &url, &auth(local::AUTH_TOKEN), 0)
            .await
            .unwrap_err(),
        FetchError::NotReady
    );
    // Streaming reads a whole file of the promised length.
    media.add("RELEN", Recording::new(3, 2));
    let response = media::fetch(
        &client,
        &hosts,
        &format!("{}.wav", media.recording_url("RELEN")),
        &auth(local::AUTH_TOKEN),
        0,
    )
    .await
    .unwrap();
    let total: usize = response
        .bytes_stream()
        .map(|c| c.unwrap().len())
        .fold(0, |a, n| async move { a + n })
        .await;
    assert_eq!(total as u64, Recording::new(3, 2).wav_len());
}
