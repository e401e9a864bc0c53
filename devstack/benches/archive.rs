//! `make bench`: archiving a four-hour dual-channel WAV (about 460 MB) through the recording
//! worker, from the stand-in's media API into S3 on the emulator, in invocations of the
//! template's 120 s (less the settling margin): an invocation that cannot finish leaves the
//! upload open and the next resumes it from where it stopped. Prints throughput,
//! invocations, and the process's peak resident memory, which must stay flat (goal: under
//! 64 MB) whatever the recording's size.
//!
//! Peak memory is the kernel's own figure (`VmHWM`, reset through `/proc/self/clear_refs`
//! once everything is started), so it counts every allocation, the HTTP and SDK buffers
//! included, without an instrumented allocator. The emulator is a separate process.

use std::time::Instant;

use backon::ExponentialBuilder;
use devstack::deploy;
use devstack::emulator::Emulator;
use devstack::workspace::Workspace;
use voicectl::media_server::{MediaServer, Recording};
use voicehooks::config::{MediaFormat, local};
use voicehooks::events::Envelope;
use voicehooks::recording::media::MediaHosts;
use voicehooks::recording::{ArchiveSettings, RecordingWorker, media_client};
use voicehooks::recording::{DynamoRecordingStore, RecordingStore};
use voicehooks::secrets::{StaticTokens, TwilioCredentials};
use voicehooks::twilio::{Params, RecordingCallback};
use voicehooks::worker::Disposition;

const GOAL_MB: f64 = 64.0;
/// 8 kHz, 16-bit, two channels: 32,000 bytes a second; four hours is 460.8 MB.
const SECONDS: u32 = 4 * 3600;
/// `RECORDING_WORKER_SECONDS=20 make bench` makes each invocation shorter, to see resumes.
fn invocation_budget() -> std::time::Duration {
    let template_timeout = std::env::var("RECORDING_WORKER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    std::time::Duration::from_secs(template_timeout)
        .saturating_sub(voicehooks::lambda::SETTLE_MARGIN)
}

fn kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workspace = Workspace::locate();
    let log_dir = workspace.log_dir("bench-archive")?;
    let mut emulator = Emulator::start(&workspace, &log_dir).await?;
    let sdk = emulator.sdk_config().await;
    let resources = deploy::deploy_local(
        &workspace,
        &emulator,
        &workspace.template(),
        &deploy::local_parameters(true),
    )
    .await?
    .resources()?;
    let media = MediaServer::start(local::ACCOUNT_SID, local::AUTH_TOKEN).await?;
    let hosts = MediaHosts::with_local(media.host_port());
    let worker = RecordingWorker {
        http: media_client(&hosts),
        hosts,
        tokens: StaticTokens {
            current: std::sync::Arc::new(TwilioCredentials::new(
                local::ACCOUNT_SID,
                local::AUTH_TOKEN,
            )),
            previous: None,
        },
        s3: voicehooks::aws::s3_client(&sdk),
        store: DynamoRecordingStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &resources.calls_table,
        ),
        transcriber: None,
        settings: ArchiveSettings {
            bucket: resources.recordings_bucket.clone(),
            kms_key_id: Some(resources.recordings_kms_key.clone()),
            format: MediaFormat::Wav,
            channels: None,
            delete_from_twilio: false,
        },
        fetch_backoff: ExponentialBuilder::default().with_max_times(0),
        pace: Default::default(),
    };
    let sid = "RE0000000000000000000000000000bench";
    let recording = Recording::new(SECONDS, 2);
    let size = recording.wav_len();
    media.add(sid, recording);
    let (_, expected_sha) = media.expected(sid).expect("held");
    let params = Params::new(
        [
            ("AccountSid", local::ACCOUNT_SID.to_owned()),
            ("CallSid", "CA00000000000000000000000000bench1".to_owned()),
            ("RecordingSid", sid.to_owned()),
            ("RecordingUrl", media.recording_url(sid)),
            ("RecordingStatus", "completed".to_owned()),
            ("RecordingDuration", SECONDS.to_string()),
            ("RecordingChannels", "2".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    );
    let body =
        Envelope::recording_status(&RecordingCallback::parse(&params)?, &params, None).to_json();

    // Everything is started: from here, the peak is the archive's.
    let idle_kib = kib("VmRSS:").unwrap_or(0);
    std::fs::write("/proc/self/clear_refs", "5")?;
    let started = Instant::now();
    let mut invocations = 0;
    loop {
        invocations += 1;
        let deadline = Instant::now() + invocation_budget();
        match worker.handle(&body, deadline).await {
            Disposition::Done => break,
            // The next invocation, as the recording queue would hand it the fresh message.
            Disposition::Continue { reason, .. } => {
                println!("  invocation {invocations}: {reason}")
            }
            other => anyhow::bail!("archive failed: {other:?}"),
        }
        anyhow::ensure!(invocations < 50, "the archive does not finish");
    }
    let elapsed = started.elapsed();
    let peak_kib = kib("VmHWM:").unwrap_or(0);
    let stored = worker
        .store
        .get("CA00000000000000000000000000bench1", sid)
        .await?
        .expect("stored");
    anyhow::ensure!(
        stored.sha256.as_deref() == Some(expected_sha.as_str()) && stored.bytes == Some(size),
        "the archive differs from the source"
    );

    let mb = size as f64 / 1e6;
    let peak_mb = peak_kib as f64 / 1024.0;
    println!();
    println!(
        "recording archive (stand-in media API → recording worker → S3 multipart on the emulator)"
    );
    println!(
        "  {mb:.1} MB (4 h, 2 channels) in {:.2} s = {:.1} MB/s over {invocations} invocation(s) of {} s; SHA-256 and size verified against the source",
        elapsed.as_secs_f64(),
        mb / elapsed.as_secs_f64().max(f64::EPSILON),
        invocation_budget().as_secs()
    );
    println!(
        "  peak RSS {peak_mb:.1} MB (goal < {GOAL_MB} MB; {:.1} MB before the archive, parts of {} MiB)",
        idle_kib as f64 / 1024.0,
        voicehooks::recording::media::PART_SIZE / (1024 * 1024)
    );
    drop(media);
    emulator.stop();
    anyhow::ensure!(
        peak_mb < GOAL_MB,
        "peak memory {peak_mb:.1} MB is over the goal"
    );
    Ok(())
}
