//! The queue envelope: one versioned JSON message per accepted webhook.
//!
//! It carries the raw Twilio params so that a replay is exact, plus what every consumer
//! needs without parsing them: kind, when we received it, the idempotency key and the SIDs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::twilio::params::ParamError;
use crate::twilio::{
    ConferenceCallback, Params, RecordingCallback, StatusCallback, TranscriptionCallback,
};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// The header Twilio sets to the same value on every retry of one webhook. It is not covered
/// by the signature, so anyone replaying a signed request can change it: it never decides
/// an event's identity (the idempotency key comes from signed params alone) and is kept on
/// the envelope only to trace a delivery, when it looks like one of Twilio's.
pub const IDEMPOTENCY_HEADER: &str = "i-twilio-idempotency-token";

/// The longest delivery token kept; Twilio's are well under it (a UUID-like string).
pub const MAX_DELIVERY_TOKEN_LEN: usize = 64;

/// Twilio's idempotency token if it looks like one (bounded, `[A-Za-z0-9._:-]`); anything
/// else an unsigned header may carry is dropped.
pub fn delivery_token(header: Option<&str>) -> Option<&str> {
    header.filter(|t| {
        !t.is_empty()
            && t.len() <= MAX_DELIVERY_TOKEN_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    })
}

/// What happened, in the domain's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "call.status")]
    CallStatus,
    /// The voice webhook answered a new call.
    #[serde(rename = "call.started")]
    CallStarted,
    /// A recording's status changed (`completed` means the media can be fetched).
    #[serde(rename = "recording.status")]
    RecordingStatus,
    /// Twilio's own transcription of a `<Record transcribe>` finished.
    #[serde(rename = "transcription.twilio")]
    TranscriptionTwilio,
    /// A conference room's event: it started or ended, or a participant joined, left, was
    /// muted, held or changed.
    #[serde(rename = "conference.status")]
    ConferenceStatus,
}

impl EventKind {
    pub const ALL: [Self; 5] = [
        Self::CallStatus,
        Self::CallStarted,
        Self::RecordingStatus,
        Self::TranscriptionTwilio,
        Self::ConferenceStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStatus => "call.status",
            Self::CallStarted => "call.started",
            Self::RecordingStatus => "recording.status",
            Self::TranscriptionTwilio => "transcription.twilio",
            Self::ConferenceStatus => "conference.status",
        }
    }

    /// The path of the webhook that receives this kind (the template's routes).
    pub fn webhook_path(self) -> &'static str {
        match self {
            Self::CallStatus => "/twilio/status",
            Self::CallStarted => "/twilio/voice",
            Self::RecordingStatus => "/twilio/recording",
            Self::TranscriptionTwilio => "/twilio/transcription",
            Self::ConferenceStatus => "/twilio/conference",
        }
    }

    /// The callback kind a webhook path receives (`call.started` is the voice webhook's
    /// own, made with the flow it chose, so no path maps to it).
    pub fn of_callback_path(path: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .filter(|kind| *kind != Self::CallStarted)
            .find(|kind| path.trim_end_matches('/').ends_with(kind.webhook_path()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope version, [`ENVELOPE_VERSION`].
    pub v: u32,
    pub kind: EventKind,
    /// RFC 3339, when the webhook function accepted the request.
    pub received_at: String,
    /// What makes the event distinct, from signed params only (CallSid, kind, status,
    /// sequence): a replayed or retried delivery has the same key, whatever its headers say.
    pub idempotency_key: String,
    /// Twilio's `I-Twilio-Idempotency-Token` for this delivery, when it had a valid one:
    /// unsigned, so for tracing only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_token: Option<String>,
    /// The call the event is about; for a conference room's own events (start, end), which
    /// concern no one call, the room's `ConferenceSid`.
    pub call_sid: String,
    pub account_sid: String,
    /// The webhook's POST params exactly as Twilio sent them.
    pub params: Params,
    /// `call.started`: the flow that answered the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
}

/// Why a queue message is not an envelope this build can apply. Such a message is poison:
/// it is reported failed, never retried hot, and rests in the DLQ for ops.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("envelope version {0} is not supported (this build reads {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
}

impl Envelope {
    /// An envelope for `params`, received now. The key is `derived` from the signed params;
    /// Twilio's unsigned token only rides along ([`delivery_token`]).
    fn new(
        kind: EventKind,
        (call_sid, account_sid): (&str, &str),
        params: &Params,
        idempotency_token: Option<&str>,
        derived: impl FnOnce() -> String,
    ) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            kind,
            received_at: now_rfc3339(),
            idempotency_key: derived(),
            delivery_token: delivery_token(idempotency_token).map(str::to_owned),
            call_sid: call_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            params: params.clone(),
            flow: None,
        }
    }

    /// Wraps an accepted status callback. Without Twilio's token the key is what makes a
    /// callback distinct: call, kind, status and sequence number (or timestamp).
    pub fn call_status(
        callback: &StatusCallback<'_>,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Self {
        let kind = EventKind::CallStatus;
        let sids = (callback.call_sid, callback.account_sid);
        Self::new(kind, sids, params, idempotency_token, || {
            let order = order(callback.sequence_number, callback.timestamp);
            format!(
                "{}:{}:{}:{order}",
                callback.call_sid,
                kind.as_str(),
                callback.status
            )
        })
    }

    /// Wraps an accepted recording-status callback: one event per recording and status.
    pub fn recording_status(
        callback: &RecordingCallback<'_>,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Self {
        let kind = EventKind::RecordingStatus;
        let sids = (callback.call_sid, callback.account_sid);
        Self::new(kind, sids, params, idempotency_token, || {
            format!(
                "{}:{}:{}",
                callback.recording_sid,
                kind.as_str(),
                callback.status.as_str()
            )
        })
    }

    /// Wraps an accepted transcription callback: one event per transcription and status.
    pub fn transcription(
        callback: &TranscriptionCallback<'_>,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Self {
        let kind = EventKind::TranscriptionTwilio;
        let sids = (callback.call_sid, callback.account_sid);
        Self::new(kind, sids, params, idempotency_token, || {
            format!(
                "{}:{}:{}",
                callback.transcription_sid,
                kind.as_str(),
                callback.status
            )
        })
    }

    /// Wraps an accepted conference callback. `SequenceNumber` orders one conference's
    /// events, so with the room and the event it makes the event distinct.
    pub fn conference_status(
        callback: &ConferenceCallback<'_>,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Self {
        let kind = EventKind::ConferenceStatus;
        let subject = callback.call_sid.unwrap_or(callback.conference_sid);
        let sids = (subject, callback.account_sid);
        Self::new(kind, sids, params, idempotency_token, || {
            let order = order(callback.sequence_number, callback.timestamp);
            format!(
                "{}:{}:{}:{}:{order}",
                callback.conference_sid,
                kind.as_str(),
                callback.event.as_str(),
                callback.call_sid.unwrap_or_default(),
            )
        })
    }

    /// The envelope the webhook for `kind` queues for a callback's `params`.
    pub fn from_callback(
        kind: EventKind,
        params: &Params,
        idempotency_token: Option<&str>,
    ) -> Result<Self, ParamError> {
        Ok(match kind {
            EventKind::CallStatus => {
                Self::call_status(&StatusCallback::parse(params)?, params, idempotency_token)
            }
            EventKind::RecordingStatus => Self::recording_status(
                &RecordingCallback::parse(params)?,
                params,
                idempotency_token,
            ),
            EventKind::TranscriptionTwilio => Self::transcription(
                &TranscriptionCallback::parse(params)?,
                params,
                idempotency_token,
            ),
            EventKind::ConferenceStatus => Self::conference_status(
                &ConferenceCallback::parse(params)?,
                params,
                idempotency_token,
            ),
            EventKind::CallStarted => return Err(ParamError::Missing("the voice webhook's flow")),
        })
    }

    /// Wraps the voice webhook's first request of a call. There is one such event per call,
    /// whatever Twilio retries, so the key is the call's.
    pub fn call_started(call_sid: &str, account_sid: &str, params: &Params, flow: &str) -> Self {
        let kind = EventKind::CallStarted;
        let mut envelope = Self::new(kind, (call_sid, account_sid), params, None, || {
            format!("{call_sid}:{}", kind.as_str())
        });
        envelope.flow = Some(flow.to_owned());
        envelope
    }

    pub fn to_json(&self) -> String {
        // Sized for the envelope up front, so serialising never regrows the buffer (this
        // runs for every accepted webhook).
        let params: usize = self.params.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
        let mut json = Vec::with_capacity(512 + params);
        serde_json::to_writer(&mut json, self).expect("an envelope always serialises");
        String::from_utf8(json).expect("serde_json writes UTF-8")
    }

    pub fn from_json(body: &str) -> Result<Self, EnvelopeError> {
        // Read the version first so that a future envelope says so instead of failing on a field.
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let Version { v } = serde_json::from_str(body)?;
        if v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(v));
        }
        Ok(serde_json::from_str(body)?)
    }
}

/// Where a callback stands among its call's or room's, for its key: Twilio's sequence
/// number, else its timestamp.
fn order(sequence_number: Option<u32>, timestamp: Option<&str>) -> String {
    match (sequence_number, timestamp) {
        (Some(seq), _) => seq.to_string(),
        (None, Some(ts)) => ts.to_owned(),
        (None, None) => String::new(),
    }
}

pub fn now_rfc3339() -> String {
    rfc3339_in(std::time::Duration::ZERO)
}

/// `after` from now, RFC 3339 (UTC).
pub fn rfc3339_in(after: std::time::Duration) -> String {
    (OffsetDateTime::now_utc() + after)
        .format(&Rfc3339)
        .expect("UTC time always formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(status: &str, seq: &str) -> Params {
        [
            ("CallSid", "CA1"),
            ("AccountSid", "AC1"),
            ("CallStatus", status),
            ("SequenceNumber", seq),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn the_key_comes_from_signed_params_whatever_the_token_says() {
        let p = params("ringing", "1");
        let cb = StatusCallback::parse(&p).unwrap();
        for token in [
            None,
            Some(""),
            Some("tok-1"),
            Some("x".repeat(8192).as_str()),
        ] {
            assert_eq!(
                Envelope::call_status(&cb, &p, token).idempotency_key,
                "CA1:call.status:ringing:1"
            );
        }
        let traced = Envelope::call_status(&cb, &p, Some("RE3f1a-9:b_c.d"));
        assert_eq!(traced.delivery_token.as_deref(), Some("RE3f1a-9:b_c.d"));
        for dropped in ["", "has space", "semi;colon", &"x".repeat(65)] {
            let env = Envelope::call_status(&cb, &p, Some(dropped));
            assert_eq!(env.delivery_token, None, "{dropped:?}");
        }
        assert!(
            !Envelope::call_status(&cb, &p, None)
                .to_json()
                .contains("delivery_token")
        );
    }

    #[test]
    fn round_trips_and_rejects_foreign_messages() {
        let p = params("completed", "3");
        let env = Envelope::call_status(&StatusCallback::parse(&p).unwrap(), &p, None);
        let json = env.to_json();
        assert!(json.contains(r#""kind":"call.status""#));
        assert!(json.contains(r#""params":[["CallSid","CA1"],"#));
        assert_eq!(Envelope::from_json(&json).unwrap(), env);
        assert!(matches!(
            Envelope::from_json("hello"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::from_json(r#"{"Records":[]}"#),
            Err(EnvelopeError::Malformed(_))
        ));
        let future = json.replacen(r#""v":1"#, r#""v":2"#, 1);
        assert!(matches!(
            Envelope::from_json(&future),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
    }
}
