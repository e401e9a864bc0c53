//! Where a recording and its transcript live in the bucket.
//!
//! Keys are a function of the recording alone (account, day, call, recording), so a
//! redelivered event overwrites the same object instead of adding one, and any object's key
//! says which call it belongs to: the transcript worker, which only learns a job's name and
//! media location from Transcribe, reads the call back from the key.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::{Date, OffsetDateTime};

/// Audio under here; the lifecycle rule that expires audio matches this prefix only.
pub const AUDIO_PREFIX: &str = "recordings/";
/// Transcribe's output documents; kept when the audio expires.
pub const TRANSCRIPT_PREFIX: &str = "transcripts/";

/// One recording's place in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingKey {
    pub account_sid: String,
    pub date: Date,
    pub call_sid: String,
    pub recording_sid: String,
}

impl RecordingKey {
    /// The day is when the recording started (Twilio's `RecordingStartTime`, RFC 2822), else
    /// when the webhook received it (RFC 3339): the same for every delivery of one event.
    pub fn new(
        account_sid: &str,
        call_sid: &str,
        recording_sid: &str,
        started: Option<&str>,
        received_at: &str,
    ) -> Self {
        let date = started
            .and_then(|s| OffsetDateTime::parse(s, &Rfc2822).ok())
            .or_else(|| OffsetDateTime::parse(received_at, &Rfc3339).ok())
            .map_or(OffsetDateTime::UNIX_EPOCH.date(), |t| {
                t.to_offset(time::UtcOffset::UTC).date()
            });
        Self {
            account_sid: account_sid.to_owned(),
            date,
            call_sid: call_sid.to_owned(),
            recording_sid: recording_sid.to_owned(),
        }
    }

    fn path(&self) -> String {
        format!(
            "{}/{:04}/{:02}/{:02}/{}/{}",
            self.account_sid,
            self.date.year(),
            u8::from(self.date.month()),
            self.date.day(),
            self.call_sid,
            self.recording_sid
        )
    }

    /// `recordings/<AC>/<yyyy>/<mm>/<dd>/<CA>/<RE>.<ext>`
    pub fn audio(&self, extension: &str) -> String {
        format!("{AUDIO_PREFIX}{}.{extension}", self.path())
    }

    /// `transcripts/<AC>/<yyyy>/<mm>/<dd>/<CA>/<RE>.json`
    pub fn transcript(&self) -> String {
        format!("{TRANSCRIPT_PREFIX}{}.json", self.path())
    }

    /// Reads an audio or transcript key back; `None` for any key this project did not write.
    pub fn parse(key: &str) -> Option<Self> {
        let rest = key
            .strip_prefix(AUDIO_PREFIX)
            .or_else(|| key.strip_prefix(TRANSCRIPT_PREFIX))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [account, year, month, day, call, file] = parts[..] else {
            return None;
        };
        let (recording, _extension) = file.rsplit_once('.')?;
        let sid = |s: &str, prefix: &str| {
            (s.len() == 34
                && s.starts_with(prefix)
                && s[2..].chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| s.to_owned())
        };
        let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
        Some(Self {
            account_sid: sid(account, "AC")?,
            date: Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?,
            call_sid: sid(call, "CA")?,
            recording_sid: sid(recording, "RE")?,
        })
    }

    /// The key of an `s3://bucket/key` or `https://s3.<region>.amazonaws.com/bucket/key` URI
    /// (Transcribe reports both forms), if it is in `bucket`.
    pub fn key_in<'a>(uri: &'a str, bucket: &str) -> Option<&'a str> {
        let path = uri.strip_prefix("s3://").or_else(|| {
            let rest = uri.strip_prefix("https://")?;
            rest.split_once('/').map(|(_host, path)| path)
        })?;
        path.strip_prefix(bucket)?.strip_prefix('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AC: &str = "AC10ca1000000000000000000000000001";
    const CA: &str = "CA00000000000000000000000000000abc";
    const RE: &str = "RE00000000000000000000000000000def";

    #[test]
    fn keys_are_deterministic_and_read_back() {
        let key = RecordingKey::new(
            AC,
            CA,
            RE,
            Some("Tue, 10 Nov 2026 23:59:40 -0500"),
            "2026-11-12T00:00:00Z",
        );
        // The start time wins, in UTC.
        assert_eq!(
            key.audio("wav"),
            format!("recordings/{AC}/2026/11/11/{CA}/{RE}.wav")
        );
        assert_eq!(
            key.transcript(),
            format!("transcripts/{AC}/2026/11/11/{CA}/{RE}.json")
        );
        assert_eq!(RecordingKey::parse(&key.audio("mp3")), Some(key.clone()));
        assert_eq!(RecordingKey::parse(&key.transcript()), Some(key));
        let received = RecordingKey::new(AC, CA, RE, None, "2026-11-12T08:00:00Z");
        assert_eq!(received.date.to_string(), "2026-11-12");
    }

    #[test]
    fn foreign_keys_are_not_recordings() {
        for key in [
            "recordings/x.wav",
            "other/AC10ca1000000000000000000000000001/2026/11/11/CA00000000000000000000000000000abc/RE00000000000000000000000000000def.wav",
            "recordings/AC10ca1000000000000000000000000001/2026/13/11/CA00000000000000000000000000000abc/RE00000000000000000000000000000def.wav",
            "recordings/AC10ca1000000000000000000000000001/2026/11/11/CA00000000000000000000000000000abc/../RE00000000000000000000000000000def.wav",
        ] {
            assert_eq!(RecordingKey::parse(key), None, "{key}");
        }
    }

    #[test]
    fn object_uris_of_both_forms_give_the_key() {
        assert_eq!(
            RecordingKey::key_in("s3://bucket/recordings/a.wav", "bucket"),
            Some("recordings/a.wav")
        );
        assert_eq!(
            RecordingKey::key_in(
                "https://s3.us-east-1.amazonaws.com/bucket/transcripts/a.json",
                "bucket"
            ),
            Some("transcripts/a.json")
        );
        assert_eq!(
            RecordingKey::key_in("s3://other/recordings/a.wav", "bucket"),
            None
        );
    }
}
