use std::collections::BTreeMap;

use voicehooks::flows::{Flows, Step, Urls};

use super::*;

const BASE: &str = "https://hooks.example.com";

fn options(seed: u64) -> SimulateOptions {
    let flows = Flows::built_in().unwrap();
    SimulateOptions {
        calls: 200,
        seed,
        concurrency: 1,
        duplicate_rate: 0.2,
        reorder_rate: 0.3,
        public_base_url: BASE.into(),
        routes: Vec::new(),
        numbers: flows.numbers().map(|(n, _)| n.to_owned()).collect(),
        softphone_rate: 0.1,
        account_sid: "AC1".into(),
        auth_token: "t".into(),
        ..SimulateOptions::default()
    }
}

/// The voice webhook's logic without HTTP: what the stand-in is tested against here.
struct InProcess {
    flows: Flows,
    urls: Urls,
}

impl VoiceServer for InProcess {
    async fn ask(&self, url: &str, params: &Params) -> Result<(String, u64), VoiceFailure> {
        let failed = |why: String| VoiceFailure {
            error_code: 11200,
            why,
        };
        let rest = without_fragment(url)
            .strip_prefix(BASE)
            .ok_or_else(|| failed("not our URL".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let step = Step::from_request(path, query).map_err(|e| failed(e.to_string()))?;
        let rendered = self.flows.render(&step, params, &self.urls);
        Ok((rendered.twiml.to_xml(), 0))
    }
}

fn without_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(u, _)| u)
}

/// A URL's path and query under `BASE`, without its overrides.
fn route_of(url: &str) -> &str {
    &without_fragment(url)[BASE.len()..]
}

async fn play_all(seed: u64) -> Vec<Conversation> {
    let server = InProcess {
        flows: Flows::built_in().unwrap(),
        urls: Urls::new(BASE),
    };
    let number = options(seed).number_urls();
    let mut calls = Vec::new();
    for script in plan(&options(seed)) {
        calls.push(call::play(&server, &script, &number, "AC1").await);
    }
    calls
}

#[test]
fn plans_are_reproducible_from_the_seed() {
    let a = serde_json::to_string(&plan(&options(7))).unwrap();
    assert_eq!(a, serde_json::to_string(&plan(&options(7))).unwrap());
    assert_ne!(a, serde_json::to_string(&plan(&options(8))).unwrap());
}

#[tokio::test]
async fn the_stand_in_follows_every_kind_of_flow_through_the_twiml() {
    let calls = play_all(3).await;
    let mut routes: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        assert!(call.errors.is_empty(), "{:?}", call.errors);
        for request in &call.voice_requests {
            let route = route_of(&request.url).split('?').next().unwrap().to_owned();
            *routes.entry(route).or_default() += 1;
        }
        let parent = &call.legs[0];
        assert_eq!(parent.final_status(), CallStatus::Completed);
        // The number's status callback carries the callbacks' overrides.
        assert_eq!(
            parent.status_callback.as_deref(),
            Some(&*format!("{BASE}/twilio/status#{}", overrides::CALLBACK))
        );
        for leg in &call.legs[1..] {
            assert_eq!(
                leg.parent_call_sid.as_deref(),
                Some(parent.call_sid.as_str())
            );
            assert_eq!(
                leg.status_callback, parent.status_callback,
                "dialled legs report to the pipeline"
            );
            assert_eq!(
                leg.events,
                ["initiated", "ringing", "answered", "completed"]
            );
        }
    }
    // Every route of the voice webhook was exercised.
    for route in [
        "/twilio/voice",
        "/twilio/voice/menu",
        "/twilio/voice/dial",
        "/twilio/voice/recorded",
    ] {
        assert!(
            routes.get(route).copied().unwrap_or(0) > 5,
            "{route}: {routes:?}"
        );
    }
    let requested: Vec<&Requested> = calls.iter().flat_map(|c| &c.requested).collect();
    let to = |path: &str| {
        requested
            .iter()
            .filter(|r| without_fragment(&r.url).ends_with(path))
            .count()
    };
    assert!(
        to("/twilio/recording") > 20 && to("/twilio/transcription") > 5,
        "{}",
        requested.len()
    );
    let dialled: usize = calls.iter().map(|c| c.legs.len() - 1).sum();
    let answered = calls
        .iter()
        .flat_map(|c| &c.legs[1..])
        .filter(|l| l.final_status() == CallStatus::Completed)
        .count();
    assert!(
        dialled > 50 && answered > 10,
        "dialled {dialled}, answered {answered}"
    );
}

#[tokio::test]
async fn a_busy_forward_ends_in_voicemail_and_a_silent_menu_retries() {
    let server = InProcess {
        flows: Flows::built_in().unwrap(),
        urls: Urls::new(BASE),
    };
    let script = Script {
        call_sid: "CA1".into(),
        from: "+16285550111".into(),
        to: "+14155550100".into(),
        gathers: ["", "1"].map(String::from).into(),
        dials: [CallStatus::Busy].into(),
        talk_secs: 30,
        sid_seed: 100,
    };
    let call = call::play(&server, &script, &options(1).number_urls(), "AC1").await;
    let steps: Vec<&str> = call
        .voice_requests
        .iter()
        .map(|r| route_of(&r.url))
        .collect();
    assert_eq!(
        steps,
        [
            "/twilio/voice",
            "/twilio/voice/menu?flow=main-menu&no_input=0&invalid=0",
            "/twilio/voice/menu?flow=main-menu&no_input=1&invalid=0",
            "/twilio/voice/dial?flow=sales",
            "/twilio/voice/recorded?flow=voicemail",
        ]
    );
    // sales rings a number and a client; both busy.
    assert_eq!(call.legs.len(), 3);
    assert!(
        call.legs[1..]
            .iter()
            .all(|l| l.final_status() == CallStatus::Busy)
    );
    assert_eq!(call.legs[2].to, "client:sales-desk");
    // The voicemail's recording and transcription callbacks, nothing for the busy Dial.
    let urls: Vec<&str> = call.requested.iter().map(|r| route_of(&r.url)).collect();
    assert_eq!(urls, ["/twilio/recording", "/twilio/transcription"]);
}

#[test]
fn callbacks_follow_the_events_asked_for_and_carry_the_faults() {
    let leg = |events: &[&str]| Leg {
        call_sid: "CA2".into(),
        parent_call_sid: Some("CA1".into()),
        from: "+14155550100".into(),
        to: "+14155550123".into(),
        statuses: vec![
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
        ],
        status_callback: Some(format!("{BASE}/twilio/status")),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        talk_secs: 61,
    };
    let at = OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let only_completed = leg_callbacks(&mut rng, &options(1), leg(&[]), at);
    assert_eq!(
        only_completed.callbacks.len(),
        1,
        "completed is always sent"
    );
    let all = leg_callbacks(
        &mut rng,
        &options(1),
        leg(&["initiated", "ringing", "answered", "completed"]),
        at,
    );
    let statuses: Vec<CallStatus> = all.callbacks.iter().map(|c| c.status).collect();
    assert_eq!(statuses, leg(&[]).statuses);
    assert!(
        all.callbacks
            .iter()
            .enumerate()
            .all(|(i, c)| c.sequence_number == i as u32)
    );
    let last = &all.callbacks[3].params;
    assert_eq!(last.get("ParentCallSid"), Some("CA1"));
    assert_eq!(last.get("Direction"), Some("outbound-dial"));
    assert_eq!(last.get("CallDuration"), Some("61"));

    let (mut dups, mut reordered) = (0, 0);
    for _ in 0..200 {
        let l = leg_callbacks(
            &mut rng,
            &options(1),
            leg(&["initiated", "ringing", "answered", "completed"]),
            at,
        );
        assert!((0..4).all(|i| l.delivery_order.contains(&i)));
        dups += l.duplicate_deliveries();
        reordered += usize::from(l.reordered);
    }
    assert!(
        dups > 100 && reordered > 40,
        "dups {dups} reordered {reordered}"
    );
}

#[test]
fn routes_map_public_urls_at_path_boundaries() {
    let mut o = options(1);
    o.routes = vec![
        (
            format!("{BASE}/twilio/voice"),
            "http://127.0.0.1:9/lambda-url/webhook-voice/twilio/voice".into(),
        ),
        (
            format!("{BASE}/twilio/status"),
            "http://127.0.0.1:9/lambda-url/webhook-status/twilio/status".into(),
        ),
    ];
    let twilio = Twilio::new(&o).unwrap();
    assert_eq!(
        twilio
            .target(&format!("{BASE}/twilio/voice/menu?flow=a&b=1"))
            .as_deref(),
        Some("http://127.0.0.1:9/lambda-url/webhook-voice/twilio/voice/menu?flow=a&b=1")
    );
    assert_eq!(twilio.target(&format!("{BASE}/twilio/voicemail")), None);
    assert_eq!(twilio.target(&format!("{BASE}/twilio/recording")), None);
    assert_eq!(twilio.target("https://evil.example/twilio/status"), None);
    o.routes.clear();
    let direct = Twilio::new(&o).unwrap();
    assert_eq!(
        direct.target("https://x.example/a").as_deref(),
        Some("https://x.example/a")
    );
}

#[test]
fn percentiles_pick_ranks() {
    let samples: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&samples, 50.0), 51);
    assert_eq!(percentile(&samples, 99.0), 99);
    assert_eq!(percentile(&[], 99.0), 0);
}

/// A voice URL that fails, and a fallback that answers: what Twilio does between them.
struct FailingVoice {
    asked: std::sync::Mutex<Vec<(String, Params)>>,
}

impl VoiceServer for FailingVoice {
    async fn ask(&self, url: &str, params: &Params) -> Result<(String, u64), VoiceFailure> {
        self.asked
            .lock()
            .unwrap()
            .push((url.to_owned(), params.clone()));
        if route_of(url).starts_with(overrides::FALLBACK_PATH) {
            let xml = voicehooks::flows::safe_twiml("Sorry.").to_xml();
            return Ok((xml, 0));
        }
        Err(VoiceFailure {
            error_code: 11200,
            why: "HTTP 502".into(),
        })
    }
}

#[tokio::test]
async fn a_failed_voice_request_goes_to_the_fallback_url_with_the_error() {
    let script = plan(&options(4)).remove(0);
    let server = FailingVoice {
        asked: Default::default(),
    };
    let number = options(4).number_urls();
    let call = call::play(&server, &script, &number, "AC1").await;
    assert!(
        call.errors.is_empty(),
        "the fallback answered: {:?}",
        call.errors
    );
    assert_eq!(call.fallbacks.len(), 1, "{:?}", call.fallbacks);
    let asked = server.asked.lock().unwrap().clone();
    let (url, params) = &asked[1];
    assert_eq!(Some(url), number.fallback.as_ref());
    assert_eq!(params.get("ErrorCode"), Some("11200"));
    assert_eq!(
        params.get("ErrorUrl"),
        Some(format!("{BASE}/twilio/voice").as_str()),
        "the URL that failed, without its overrides"
    );
    assert_eq!(params.get("CallSid"), Some(script.call_sid.as_str()));

    // Without a fallback URL the caller hears Twilio's application error.
    let bare = NumberUrls {
        fallback: None,
        ..number
    };
    let call = call::play(&server, &script, &bare, "AC1").await;
    assert_eq!(call.errors.len(), 1);
    assert!(
        call.errors[0].contains("no fallback URL"),
        "{:?}",
        call.errors
    );
}
