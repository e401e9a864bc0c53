//! The one emulated step of the local stack: what AWS itself does when a Transcribe job
//! finishes.
//!
//! moto runs Transcribe jobs through QUEUED → IN_PROGRESS → COMPLETED but writes no
//! transcript and emits no event. This task watches the jobs and, for each finished one,
//! does what Transcribe and EventBridge would: writes the output document in Transcribe's
//! format where the job asked (per channel when channel identification is on), and sends
//! the "Transcribe Job State Change" event to the transcript queue, as the template's
//! EventBridge rule targets it. Media that is not audio fails the job, as Transcribe does.
//! Everything downstream (the transcript worker, its reads of the job and of S3) is real.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_transcribe::types::TranscriptionJobStatus;
use serde_json::{Value, json};
use voicehooks::recording::keys::RecordingKey;
use voicehooks::transcribe::STATE_CHANGE_DETAIL_TYPE;

use crate::emulator::{ACCOUNT_ID, REGION};
use crate::task::Background;

/// What the completer has done.
#[derive(Debug, Default)]
pub struct CompleterStats {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Jobs the last sweep found unfinished: the stack is not drained while there are any.
    pub pending: AtomicU64,
    /// Sweeps done: a wait for quiet sees at least two whole ones, so a job started after
    /// one sweep listed the jobs is seen by the next.
    pub sweeps: AtomicU64,
}

pub struct TranscribeCompleter {
    pub stats: Arc<CompleterStats>,
    task: Background,
}

/// What Transcribe says of media it cannot read.
pub const NOT_AUDIO: &str = "The media format provided does not match the detected media format. Check the media format and try your request again.";

struct Completer {
    transcribe: aws_sdk_transcribe::Client,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    bucket: String,
    queue_url: String,
}

impl TranscribeCompleter {
    pub fn start(sdk: &SdkConfig, bucket: &str, transcript_queue_url: &str) -> Self {
        let completer = Completer {
            transcribe: aws_sdk_transcribe::Client::new(sdk),
            s3: voicehooks::aws::s3_client(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
            bucket: bucket.to_owned(),
            queue_url: transcript_queue_url.to_owned(),
        };
        let stats = Arc::new(CompleterStats::default());
        let task_stats = stats.clone();
        let task = Background::spawn(|mut stopped| async move {
            let mut finished = HashSet::new();
            loop {
                if let Err(e) = completer.sweep(&mut finished, &task_stats).await {
                    tracing::warn!(error = %e, "transcribe completer sweep failed");
                }
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        });
        Self { stats, task }
    }

    pub async fn stop(&mut self) {
        self.task.stop().await;
    }
}

impl Completer {
    async fn sweep(
        &self,
        finished: &mut HashSet<String>,
        stats: &CompleterStats,
    ) -> anyhow::Result<()> {
        let mut next = None;
        let mut names = Vec::new();
        loop {
            let page = self
                .transcribe
                .list_transcription_jobs()
                .set_next_token(next)
                .send()
                .await?;
            names.extend(
                page.transcription_job_summaries()
                    .iter()
                    .filter_map(|j| j.transcription_job_name().map(str::to_owned)),
            );
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        let mut pending = 0;
        for name in names {
            if finished.contains(&name) {
                continue;
            }
            if self.complete(&name, stats).await? {
                finished.insert(name);
            } else {
                pending += 1;
            }
        }
        stats.pending.store(pending, Ordering::SeqCst);
        stats.sweeps.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Finishes one job; `false` if it is not finished yet.
    async fn complete(&self, name: &str, stats: &CompleterStats) -> anyhow::Result<bool> {
        // Each read moves moto's job one state on.
        let job = self
            .transcribe
            .get_transcription_job()
            .transcription_job_name(name)
            .send()
            .await?
            .transcription_job
            .ok_or_else(|| anyhow::anyhow!("job {name} has no body"))?;
        if job.transcription_job_status != Some(TranscriptionJobStatus::Completed) {
            return Ok(false);
        }
        let media_key = job
            .media
            .as_ref()
            .and_then(|m| m.media_file_uri.as_deref())
            .and_then(|uri| RecordingKey::key_in(uri, &self.bucket))
            .ok_or_else(|| anyhow::anyhow!("job {name}: media not in {}", self.bucket))?
            .to_owned();
        let head = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&media_key)
            .range("bytes=0-43")
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        let is_audio = (head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE"))
            || head.starts_with(b"ID3")
            || head.starts_with(&[0xFF, 0xFB]);
        let seconds = wav_seconds(&head);
        let channels = if job
            .settings
            .as_ref()
            .and_then(|s| s.channel_identification)
            .unwrap_or(false)
        {
            2
        } else {
            1
        };
        let mut detail = json!({
            "TranscriptionJobName": name,
            "TranscriptionJobStatus": if is_audio { "COMPLETED" } else { "FAILED" },
        });
        if is_audio {
            let output_key = job
                .transcript
                .as_ref()
                .and_then(|t| t.transcript_file_uri.as_deref())
                .and_then(|uri| RecordingKey::key_in(uri, &self.bucket))
                .ok_or_else(|| anyhow::anyhow!("job {name}: no output in {}", self.bucket))?
                .to_owned();
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&output_key)
                .content_type("application/json")
                .body(ByteStream::from(
                    output_document(name, channels, seconds)
                        .to_string()
                        .into_bytes(),
                ))
                .send()
                .await?;
            stats.completed.fetch_add(1, Ordering::Relaxed);
        } else {
            detail["FailureReason"] = json!(NOT_AUDIO);
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        let event = json!({
            "version": "0",
            "id": format!("local-{name}"),
            "detail-type": STATE_CHANGE_DETAIL_TYPE,
            "source": "aws.transcribe",
            "account": ACCOUNT_ID,
            "time": voicehooks::events::now_rfc3339(),
            "region": REGION,
            "resources": [],
            "detail": detail,
        });
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(event.to_string())
            .send()
            .await?;
        Ok(true)
    }
}

/// Speech runs at about 150 words a minute: the emulated transcript is as long as the audio
/// would make it (a four-hour call's is hundreds of KB), shared by the channels.
const WORDS_PER_SECOND: f64 = 2.5;

/// A WAV header's duration: data bytes (offset 40) over bytes per second (offset 28).
fn wav_seconds(head: &[u8]) -> f64 {
    let le = |at: usize| {
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    match (le(28), le(40)) {
        (rate, data) if rate > 0 => f64::from(data) / f64::from(rate),
        _ => 0.0,
    }
}

/// The words the emulated transcript has on each of `channels` for `seconds` of audio: a
/// phrase naming the speaker and the job, said again for as long as the audio lasts.
pub fn emulated_words(job: &str, channel: usize, channels: usize, seconds: f64) -> Vec<String> {
    let who = ["caller", "agent"]
        .get(channel)
        .copied()
        .unwrap_or("speaker");
    let phrase: Vec<String> = format!("This is the {who} on {job}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let words = ((seconds * WORDS_PER_SECOND / channels.max(1) as f64) as usize).max(phrase.len());
    phrase
        .iter()
        .cycle()
        .take(words.div_ceil(phrase.len()) * phrase.len())
        .cloned()
        .collect()
}

/// A Transcribe output document (the shape documented for channel identification).
fn output_document(job: &str, channels: usize, seconds: f64) -> Value {
    let items = |channel: usize| -> Vec<Value> {
        let mut items: Vec<Value> = emulated_words(job, channel, channels, seconds)
            .into_iter()
            .enumerate()
            .map(|(i, word)| {
                json!({
                    "start_time": format!("{:.2}", i as f64 * 0.4),
                    "end_time": format!("{:.2}", i as f64 * 0.4 + 0.35),
                    "alternatives": [{"confidence": "0.99", "content": word}],
                    "type": "pronunciation",
                })
            })
            .collect();
        items.push(
            json!({"alternatives": [{"confidence": "0.0", "content": "."}], "type": "punctuation"}),
        );
        items
    };
    let text = |channel: usize| {
        format!(
            "{}.",
            emulated_words(job, channel, channels, seconds).join(" ")
        )
    };
    let mut results = json!({
        "transcripts": [{"transcript": (0..channels).map(text).collect::<Vec<_>>().join(" ")}],
        "items": (0..channels).flat_map(items).collect::<Vec<_>>(),
    });
    if channels > 1 {
        results["channel_labels"] = json!({
            "number_of_channels": channels,
            "channels": (0..channels)
                .map(|c| json!({"channel_label": format!("ch_{c}"), "items": items(c)}))
                .collect::<Vec<_>>(),
        });
    }
    json!({
        "jobName": job,
        "accountId": ACCOUNT_ID,
        "status": "COMPLETED",
        "results": results,
    })
}
