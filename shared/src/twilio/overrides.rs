//! Twilio's webhook connection overrides: the `#ct=…&rt=…&tt=…&rc=…&rp=…` fragment on a
//! webhook URL that tells Twilio how to deliver to it, and the overrides this project puts on
//! every URL it hands Twilio.
//!
//! What Twilio documents ("Webhooks (HTTP callbacks): Connection Overrides",
//! <https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides>):
//! - `ct` connect timeout, ms: 100–10000, default 5000;
//! - `rt` read timeout (to the first response byte, and between packets), ms: 100–15000,
//!   default 15000;
//! - `tt` total time for every attempt together, ms: 100–15000, default 15000;
//! - `rc` retry count: 0–5, default 1;
//! - `rp` retry policy, which failures are retried: `4xx`, `5xx`, `ct` (connection failed),
//!   `rt` (read timed out), `all`; default `ct`;
//! - `e` edge and `sni`, which change where the request comes from, not whether it arrives.
//!
//! Error 11205 (<https://www.twilio.com/docs/api/errors/11205>) describes the defaults in
//! action: two 5-second connect attempts, 15 s in all, then the fallback URL. So without an
//! override, a 5xx answer or a slow one is *not* retried: one attempt, and the event is gone.
//! Twilio refuses a malformed policy (error 11243), so [`ConnectionOverrides::parse`] does too.
//!
//! The fragment never reaches the server (browsers and HTTP clients do not send it), and
//! whether Twilio includes it in the URL it signs is undocumented: the webhooks accept a
//! signature over the URL with their route's fragment and without it
//! ([`for_path`] says which fragment a route was given).

use std::fmt;
use std::time::Duration;

/// Which failures of one attempt Twilio retries (`rp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    pub status_4xx: bool,
    pub status_5xx: bool,
    pub connect: bool,
    pub read_timeout: bool,
}

/// How one delivery attempt failed, in `rp`'s terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Failure {
    /// The TCP/TLS connection could not be made within `ct` (refused, reset, timed out).
    Connect,
    /// Connected, but no answer within `rt`.
    ReadTimeout,
    /// Answered 4xx.
    Status4xx,
    /// Answered 5xx.
    Status5xx,
}

impl Failure {
    /// The `rp` token of this failure class.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "ct",
            Self::ReadTimeout => "rt",
            Self::Status4xx => "4xx",
            Self::Status5xx => "5xx",
        }
    }
}

impl RetryPolicy {
    /// Twilio's default: only a failed connection is retried.
    pub const DEFAULT: Self = Self {
        status_4xx: false,
        status_5xx: false,
        connect: true,
        read_timeout: false,
    };

    pub fn retries(self, failure: Failure) -> bool {
        match failure {
            Failure::Connect => self.connect,
            Failure::ReadTimeout => self.read_timeout,
            Failure::Status4xx => self.status_4xx,
            Failure::Status5xx => self.status_5xx,
        }
    }

    fn parse(value: &str) -> Result<Self, OverrideError> {
        let mut policy = Self::default();
        for token in value.split(',') {
            match token {
                "4xx" => policy.status_4xx = true,
                "5xx" => policy.status_5xx = true,
                "ct" => policy.connect = true,
                "rt" => policy.read_timeout = true,
                "all" => {
                    policy = Self {
                        status_4xx: true,
                        status_5xx: true,
                        connect: true,
                        read_timeout: true,
                    }
                }
                other => return Err(OverrideError::Policy(other.to_owned())),
            }
        }
        Ok(policy)
    }
}

impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens: Vec<&str> = [
            (self.connect, "ct"),
            (self.read_timeout, "rt"),
            (self.status_4xx, "4xx"),
            (self.status_5xx, "5xx"),
        ]
        .into_iter()
        .filter_map(|(on, token)| on.then_some(token))
        .collect();
        if tokens.len() == 4 {
            f.write_str("all")
        } else {
            f.write_str(&tokens.join(","))
        }
    }
}

/// A URL's delivery settings, Twilio's defaults where the fragment says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub total_timeout: Duration,
    /// Attempts after the first.
    pub retries: u8,
    pub policy: RetryPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("connection override {name}={value}: {why}")]
    Value {
        name: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("connection override rp names an unknown retry policy {0:?} (Twilio error 11243)")]
    Policy(String),
    #[error("unknown connection override {0:?}")]
    Unknown(String),
}

impl Default for ConnectionOverrides {
    /// Twilio's defaults, for a URL without overrides.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(5000),
            read_timeout: Duration::from_millis(15000),
            total_timeout: Duration::from_millis(15000),
            retries: 1,
            policy: RetryPolicy::DEFAULT,
        }
    }
}

fn millis(name: &'static str, value: &str, max: u64) -> Result<Duration, OverrideError> {
    let invalid = |why| OverrideError::Value {
        name,
        value: value.to_owned(),
        why,
    };
    let ms: u64 = value
        .parse()
        .map_err(|_| invalid("not a whole number of ms"))?;
    if !(100..=max).contains(&ms) {
        return Err(invalid("out of Twilio's range"));
    }
    Ok(Duration::from_millis(ms))
}

impl ConnectionOverrides {
    /// The settings a fragment (without its `#`) gives; empty: Twilio's defaults.
    pub fn parse(fragment: &str) -> Result<Self, OverrideError> {
        let mut overrides = Self::default();
        for pair in fragment.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "ct" => overrides.connect_timeout = millis("ct", value, 10_000)?,
                "rt" => overrides.read_timeout = millis("rt", value, 15_000)?,
                "tt" => overrides.total_timeout = millis("tt", value, 15_000)?,
                "rc" => {
                    overrides.retries = value.parse().ok().filter(|n| *n <= 5).ok_or_else(|| {
                        OverrideError::Value {
                            name: "rc",
                            value: value.to_owned(),
                            why: "not a count from 0 to 5",
                        }
                    })?
                }
                "rp" => overrides.policy = RetryPolicy::parse(value)?,
                // Where the request leaves Twilio from, and TLS SNI: not how it is retried.
                "e" | "sni" => {}
                other => return Err(OverrideError::Unknown(other.to_owned())),
            }
        }
        Ok(overrides)
    }

    /// A URL without its fragment, and the settings the fragment gives.
    pub fn of_url(url: &str) -> Result<(&str, Self), OverrideError> {
        match url.split_once('#') {
            Some((base, fragment)) => Ok((base, Self::parse(fragment)?)),
            None => Ok((url, Self::default())),
        }
    }

    /// The most attempts Twilio makes (the first and its retries).
    pub fn max_attempts(&self) -> u32 {
        1 + u32::from(self.retries)
    }
}

impl fmt::Display for ConnectionOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ct={}&rt={}&tt={}&rc={}&rp={}",
            self.connect_timeout.as_millis(),
            self.read_timeout.as_millis(),
            self.total_timeout.as_millis(),
            self.retries,
            self.policy
        )
    }
}

/// The overrides on the status, recording and transcription callbacks. An acknowledgement
/// takes at most the SQS deadline plus the spill deadline plus a token read (about 3.5 s,
/// `voicehooks::webhook`), so `rt` leaves it room; every failure is retried, 4xx included, since
/// API Gateway's throttle answers 429, and a retry of an event that did arrive is a
/// duplicate the workers absorb. Three attempts fit in Twilio's 15 s.
pub const CALLBACK: &str = "ct=2000&rt=5000&tt=15000&rc=2&rp=all";
/// The overrides on the voice URL and the flows' action URLs: a caller is waiting, so fewer
/// and shorter attempts before Twilio asks the fallback URL. The voice webhook answers in
/// its enqueue deadline (1 s) plus a token read; a 4xx from it is final (a bad signature or
/// request), never retried.
pub const VOICE: &str = "ct=1000&rt=4000&tt=8000&rc=1&rp=ct,rt,5xx";
/// The overrides on the voice fallback URL, the last thing a caller can be given.
pub const FALLBACK: &str = "ct=1000&rt=3000&tt=6000&rc=1&rp=ct,rt,5xx";

/// The route Twilio is given as the numbers' and TwiML Apps' `VoiceFallbackUrl`.
pub const FALLBACK_PATH: &str = "/twilio/fallback";

/// The overrides a route's URLs carry, by the path Twilio posts to.
pub fn for_path(path: &str) -> &'static str {
    let path = path.trim_end_matches('/');
    if path.ends_with(FALLBACK_PATH) {
        FALLBACK
    } else if path.ends_with("/twilio/voice") || path.contains("/twilio/voice/") {
        VOICE
    } else {
        CALLBACK
    }
}

/// `url` with a route's overrides as its fragment (replacing any it had).
pub fn with_overrides(url: &str, overrides: &str) -> String {
    let base = url.split_once('#').map_or(url, |(base, _)| base);
    format!("{base}#{overrides}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_twilios() {
        let d = ConnectionOverrides::parse("").unwrap();
        assert_eq!(d, ConnectionOverrides::default());
        assert_eq!(d.max_attempts(), 2);
        assert!(d.policy.retries(Failure::Connect));
        for not in [Failure::ReadTimeout, Failure::Status4xx, Failure::Status5xx] {
            assert!(!d.policy.retries(not), "{not:?} is not retried by default");
        }
        assert_eq!(d.to_string(), "ct=5000&rt=15000&tt=15000&rc=1&rp=ct");
    }

    #[test]
    fn ours_parse_and_print_back() {
        for ours in [CALLBACK, VOICE, FALLBACK] {
            let parsed = ConnectionOverrides::parse(ours).unwrap();
            assert_eq!(parsed.to_string(), ours);
            // Every attempt's read timeout fits the total at least once.
            assert!(parsed.read_timeout + parsed.connect_timeout <= parsed.total_timeout);
        }
        let callback = ConnectionOverrides::parse(CALLBACK).unwrap();
        assert_eq!(callback.max_attempts(), 3);
        assert!(callback.policy.retries(Failure::Status5xx));
        assert!(callback.policy.retries(Failure::Status4xx));
        let voice = ConnectionOverrides::parse(VOICE).unwrap();
        assert!(!voice.policy.retries(Failure::Status4xx));
    }

    #[test]
    fn malformed_overrides_are_refused() {
        for bad in [
            "rc=6",
            "rc=-1",
            "ct=50",
            "rt=15001",
            "tt=abc",
            "rp=5xx,6xx",
            "rp=",
            "xx=1",
        ] {
            assert!(ConnectionOverrides::parse(bad).is_err(), "{bad}");
        }
        assert!(ConnectionOverrides::parse("e=ashburn&sni=y&rc=0").is_ok());
    }

    #[test]
    fn routes_know_their_fragment() {
        assert_eq!(for_path("/twilio/status"), CALLBACK);
        assert_eq!(for_path("/twilio/recording"), CALLBACK);
        assert_eq!(for_path("/twilio/conference"), CALLBACK);
        assert_eq!(for_path("/twilio/voice"), VOICE);
        assert_eq!(for_path("/twilio/voice/menu"), VOICE);
        assert_eq!(for_path("/twilio/fallback"), FALLBACK);
        let url = with_overrides("https://x.test/twilio/status?a=1#rc=0", CALLBACK);
        let (base, o) = ConnectionOverrides::of_url(&url).unwrap();
        assert_eq!(base, "https://x.test/twilio/status?a=1");
        assert_eq!(o.to_string(), CALLBACK);
    }
}
