//! `voicectl numbers check` and `apply`: every phone number and the TwiML App, what each
//! points at in Twilio, against what the stack's outputs say it should (`VoiceUrl`,
//! `VoiceFallbackUrl`, `StatusCallbackUrl`, each POST and with its connection overrides).
//! Twilio's REST API is the source: the numbers are read and changed there, with the
//! account's credentials from the stack's secret.

use serde::Serialize;
use voicehooks::twilio::overrides;
use voicehooks::twilio::rest::{
    Application, IncomingPhoneNumber, RestClient, RestError, VoiceSettings,
};

/// What every number and the App should point at: the stack's outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    pub voice_url: String,
    pub voice_fallback_url: String,
    pub status_callback: String,
}

impl Expected {
    /// The template's `VoiceUrl`, `VoiceFallbackUrl` and `StatusCallbackUrl` outputs under
    /// the stack's public base URL.
    pub fn for_base(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            voice_url: format!("{base}/twilio/voice#{}", overrides::VOICE),
            voice_fallback_url: format!(
                "{base}{}#{}",
                overrides::FALLBACK_PATH,
                overrides::FALLBACK
            ),
            status_callback: format!("{base}/twilio/status#{}", overrides::CALLBACK),
        }
    }
}

/// A number's or App's voice settings, as Twilio reports them.
pub type Voice = VoiceSettings;

/// One setting that is not what the stack needs, and the value that fixes it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    /// Twilio's update parameter (`VoiceUrl`, `StatusCallbackMethod`, …).
    pub parameter: &'static str,
    pub problem: String,
    pub current: String,
    pub wanted: String,
}

/// A number or the App, and its drift.
#[derive(Debug, Clone, Serialize)]
pub struct Wired {
    /// `number` or `application`.
    pub kind: &'static str,
    pub sid: String,
    /// The phone number, or the App's friendly name.
    pub name: String,
    pub voice: Voice,
    /// A number that uses a TwiML App: Twilio ignores its own voice URLs.
    pub via_application: Option<String>,
    pub drift: Vec<Drift>,
}

impl Wired {
    /// The update path under the account (`IncomingPhoneNumbers/PN….json`).
    fn resource(&self) -> String {
        match self.kind {
            "number" => format!("IncomingPhoneNumbers/{}.json", self.sid),
            _ => format!("Applications/{}.json", self.sid),
        }
    }
}

/// Drift of one URL setting and its method.
fn url_drift(
    (url_parameter, method_parameter): (&'static str, &'static str),
    (url, method): (&str, &str),
    wanted: &str,
) -> Vec<Drift> {
    let mut drift = Vec::new();
    let strip = |u: &str| u.split('#').next().unwrap_or_default().to_owned();
    let problem = if url.is_empty() {
        Some("missing".to_owned())
    } else if url == wanted {
        None
    } else if strip(url) == strip(wanted) {
        Some(if url.contains('#') {
            "other connection overrides".to_owned()
        } else {
            "no connection overrides: Twilio would retry only a failed connection".to_owned()
        })
    } else {
        Some("points elsewhere".to_owned())
    };
    if let Some(problem) = problem {
        drift.push(Drift {
            parameter: url_parameter,
            problem,
            current: url.to_owned(),
            wanted: wanted.to_owned(),
        });
    }
    // Twilio's default is POST; an empty method is that default.
    if !method.is_empty() && method != "POST" {
        drift.push(Drift {
            parameter: method_parameter,
            problem: format!("{method} instead of POST"),
            current: method.to_owned(),
            wanted: "POST".to_owned(),
        });
    }
    drift
}

/// Everything about `voice` that differs from `expected`.
pub fn drift(voice: &Voice, expected: &Expected) -> Vec<Drift> {
    [
        url_drift(
            ("VoiceUrl", "VoiceMethod"),
            (&voice.voice_url, &voice.voice_method),
            &expected.voice_url,
        ),
        url_drift(
            ("VoiceFallbackUrl", "VoiceFallbackMethod"),
            (&voice.voice_fallback_url, &voice.voice_fallback_method),
            &expected.voice_fallback_url,
        ),
        url_drift(
            ("StatusCallback", "StatusCallbackMethod"),
            (&voice.status_callback, &voice.status_callback_method),
            &expected.status_callback,
        ),
    ]
    .concat()
}

/// What `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct NumbersReport {
    pub account_sid: String,
    pub expected: Expected,
    pub wired: Vec<Wired>,
}

impl NumbersReport {
    pub fn drifted(&self) -> impl Iterator<Item = &Wired> {
        self.wired.iter().filter(|w| !w.drift.is_empty())
    }
    pub fn in_sync(&self) -> bool {
        self.drifted().next().is_none()
    }
}

/// Reads every number and the App (`app_sid`, the secret's `twiml_app_sid`; every App when
/// the secret names none) and compares them with `expected`.
pub async fn check(
    twilio: &RestClient,
    account_sid: &str,
    expected: &Expected,
    app_sid: Option<&str>,
) -> Result<NumbersReport, RestError> {
    let numbers: Vec<IncomingPhoneNumber> = twilio.incoming_phone_numbers().await?;
    let apps: Vec<Application> = twilio.applications().await?;
    let mut wired: Vec<Wired> = numbers
        .iter()
        .map(|n| {
            let voice = n.voice.clone();
            let via = n.voice_application_sid.clone().filter(|s| !s.is_empty());
            Wired {
                kind: "number",
                sid: n.sid.clone(),
                name: n.phone_number.clone(),
                drift: if via.is_some() {
                    Vec::new()
                } else {
                    drift(&voice, expected)
                },
                voice,
                via_application: via,
            }
        })
        .collect();
    wired.extend(
        apps.iter()
            .filter(|a| app_sid.is_none_or(|sid| a.sid == sid))
            .map(|a| {
                let voice = a.voice.clone();
                Wired {
                    kind: "application",
                    sid: a.sid.clone(),
                    name: a.friendly_name.clone().unwrap_or_default(),
                    drift: drift(&voice, expected),
                    voice,
                    via_application: None,
                }
            }),
    );
    Ok(NumbersReport {
        account_sid: account_sid.to_owned(),
        expected: expected.clone(),
        wired,
    })
}

/// Points every drifted resource of `report` (only those named in `only`, when it names
/// any) at the stack: one update each, with just the settings that drifted. Returns what
/// was changed.
pub async fn apply(
    twilio: &RestClient,
    report: &NumbersReport,
    only: &[String],
) -> Result<Vec<Wired>, RestError> {
    let mut changed = Vec::new();
    for wired in selected(report, only) {
        let params: Vec<(&str, &str)> = wired
            .drift
            .iter()
            .map(|d| (d.parameter, d.wanted.as_str()))
            .collect();
        match wired.kind {
            "number" => {
                twilio
                    .update::<IncomingPhoneNumber>(&wired.resource(), &params)
                    .await?;
            }
            _ => {
                twilio
                    .update::<Application>(&wired.resource(), &params)
                    .await?;
            }
        }
        changed.push(wired.clone());
    }
    Ok(changed)
}

/// The drifted resources `apply` would change.
pub fn selected<'a>(
    report: &'a NumbersReport,
    only: &'a [String],
) -> impl Iterator<Item = &'a Wired> {
    report
        .drifted()
        .filter(move |w| only.is_empty() || only.iter().any(|o| *o == w.name || *o == w.sid))
}

/// The report as text: one line per number or App, then each drift under it.
pub fn render(report: &NumbersReport) -> String {
    let mut out = format!(
        "numbers and TwiML Apps of {}, against the stack's outputs\n  VoiceUrl          {}\n  VoiceFallbackUrl  {}\n  StatusCallback    {}\n",
        report.account_sid,
        report.expected.voice_url,
        report.expected.voice_fallback_url,
        report.expected.status_callback
    );
    for w in &report.wired {
        let state = match (&w.via_application, w.drift.len()) {
            (Some(app), _) => format!("uses TwiML App {app} (checked there)"),
            (None, 0) => "in sync".to_owned(),
            (None, n) => format!("{n} drifted"),
        };
        out.push_str(&format!(
            "  {:<11} {:<16} {}  {state}\n",
            w.kind, w.name, w.sid
        ));
        for d in &w.drift {
            out.push_str(&format!(
                "      {:<20} {}: {:?}\n",
                d.parameter, d.problem, d.current
            ));
        }
    }
    let drifted = report.drifted().count();
    out.push_str(&format!(
        "{drifted} of {} drifted{}\n",
        report.wired.len(),
        if drifted > 0 {
            "; `voicectl numbers apply` points them at the stack"
        } else {
            ""
        }
    ));
    out
}

/// What `apply` would change or changed: `from → to` per setting.
pub fn render_changes<'a>(changes: impl Iterator<Item = &'a Wired>, dry_run: bool) -> String {
    let mut out = String::new();
    for w in changes {
        out.push_str(&format!("  {} {} ({})\n", w.kind, w.name, w.sid));
        for d in &w.drift {
            out.push_str(&format!(
                "      {:<20} {:?} → {:?}\n",
                d.parameter, d.current, d.wanted
            ));
        }
    }
    if out.is_empty() {
        out.push_str("  nothing to change\n");
    } else if dry_run {
        out.push_str("  (dry run: nothing changed)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wired(expected: &Expected) -> Voice {
        Voice {
            voice_url: expected.voice_url.clone(),
            voice_method: "POST".into(),
            voice_fallback_url: expected.voice_fallback_url.clone(),
            voice_fallback_method: "POST".into(),
            status_callback: expected.status_callback.clone(),
            status_callback_method: "POST".into(),
        }
    }

    #[test]
    fn finds_each_kind_of_drift() {
        let expected = Expected::for_base("https://voice.example.com/");
        assert!(drift(&wired(&expected), &expected).is_empty());
        let mut voice = wired(&expected);
        voice.voice_method = "GET".into();
        voice.voice_url = "https://voice.example.com/twilio/voice".into();
        voice.voice_fallback_url = String::new();
        voice.status_callback = "https://abc123.ngrok.io/status".into();
        voice.status_callback_method = String::new();
        let found: Vec<(&str, String)> = drift(&voice, &expected)
            .into_iter()
            .map(|d| (d.parameter, d.problem))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "VoiceUrl",
                    "no connection overrides: Twilio would retry only a failed connection".into()
                ),
                ("VoiceMethod", "GET instead of POST".into()),
                ("VoiceFallbackUrl", "missing".into()),
                ("StatusCallback", "points elsewhere".into()),
            ]
        );
    }
}
