use proptest::prelude::*;

use super::*;
use crate::twilio::Params;
use crate::twilio::twiml::{self, Verb};

const BASE: &str = "https://hooks.example.com";

fn built_in() -> Flows {
    Flows::built_in().unwrap_or_else(|e| panic!("{e}"))
}

/// The functions read the built-in flows without checking them (a cold start would load
/// libphonenumber's metadata for it): this is the check they rely on.
#[test]
fn the_built_in_flows_pass_every_check() {
    if let Err(e) = Flows::parse(BUILT_IN, BUILT_IN_PATH) {
        panic!("{e}");
    }
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().copied().collect()
}

fn inbound(to: &str) -> Params {
    params(&[
        ("CallSid", "CA1"),
        ("AccountSid", "AC1"),
        ("From", "+16285550111"),
        ("To", to),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ])
}

fn step(path: &str, query: &str) -> Step {
    Step::from_request(path, query).unwrap()
}

/// Renders, checks the TwiML as Twilio would, and returns it with the XML.
fn render(flows: &Flows, step: &Step, params: &Params) -> (Rendered, String) {
    let rendered = flows.render(step, params, &Urls::new(BASE));
    let xml = rendered.twiml.to_xml();
    twiml::check(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    (rendered, xml)
}

fn body(xml: &str) -> &str {
    xml.strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .unwrap()
}

#[test]
fn routes_by_called_number_softphone_and_default() {
    let flows = built_in();
    assert_eq!(
        flows.route(Some("+1628"), Some("+14155550101")),
        Some("sales")
    );
    assert_eq!(
        flows.route(Some("+1628"), Some("+19995550000")),
        Some("main-menu")
    );
    assert_eq!(
        flows.route(Some("client:alice"), Some("+14155550101")),
        Some("softphone")
    );
    assert_eq!(flows.route(None, None), Some("main-menu"));
}

#[test]
fn forward_announces_consent_and_dials_every_leg_with_callbacks() {
    let (r, xml) = render(
        &built_in(),
        &step("/twilio/voice", ""),
        &inbound("+14155550101"),
    );
    assert_eq!((r.flow.as_str(), r.outcome), ("sales", "entered"));
    let events = r#"statusCallback="https://hooks.example.com/twilio/status#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all" statusCallbackEvent="initiated ringing answered completed" statusCallbackMethod="POST""#;
    assert_eq!(
        body(&xml),
        format!(
            r#"<Response><Say voice="Polly.Joanna" language="en-US">Connecting you to sales.</Say><Say voice="Polly.Joanna" language="en-US">This call may be recorded for quality and training.</Say><Dial action="https://hooks.example.com/twilio/voice/dial?flow=sales#ct=1000&amp;rt=4000&amp;tt=8000&amp;rc=1&amp;rp=ct,rt,5xx" method="POST" callerId="+14155550101" timeout="20" record="record-from-answer-dual" recordingStatusCallback="https://hooks.example.com/twilio/recording#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all" recordingStatusCallbackEvent="in-progress completed absent"><Number {events}>+14155550123</Number><Client {events}>sales-desk</Client></Dial></Response>"#
        )
    );
}

#[test]
fn forward_with_a_configured_caller_id_and_a_sip_leg() {
    let (r, xml) = render(
        &built_in(),
        &step("/twilio/voice", "flow=support"),
        &inbound("+14155550199"),
    );
    assert_eq!(r.flow, "support");
    assert!(xml.contains(r#"callerId="+14155550100""#), "{xml}");
    assert!(
        xml.contains(r#"<Sip statusCallback="https://hooks.example.com/twilio/status#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all""#),
        "{xml}"
    );
    assert!(xml.contains(">sip:support@pbx.acme.example</Sip>"), "{xml}");
    assert!(
        !xml.contains("Connecting you"),
        "no announce configured: {xml}"
    );
}

#[test]
fn an_unanswered_dial_falls_back_to_voicemail_and_an_answered_one_hangs_up() {
    let flows = built_in();
    for status in ["busy", "no-answer", "failed"] {
        let mut p = inbound("+14155550101");
        p = params(&[("DialCallStatus", status)])
            .iter()
            .chain(p.iter())
            .collect();
        let (r, xml) = render(&flows, &step("/twilio/voice/dial", "flow=sales"), &p);
        assert_eq!(
            (r.flow.as_str(), r.outcome),
            ("voicemail", "dial-fallback"),
            "{status}"
        );
        assert!(xml.contains("<Record "), "{status}: {xml}");
    }
    for status in ["completed", "answered", "canceled"] {
        let p = params(&[("DialCallStatus", status)]);
        let (r, xml) = render(&flows, &step("/twilio/voice/dial", "flow=sales"), &p);
        assert_eq!(r.outcome, "hangup");
        assert_eq!(body(&xml), "<Response><Hangup/></Response>");
    }
}

#[test]
fn menu_gathers_with_state_in_the_action_url_and_redirects_on_silence() {
    let (r, xml) = render(
        &built_in(),
        &step("/twilio/voice", ""),
        &inbound("+14155550100"),
    );
    assert_eq!((r.flow.as_str(), r.outcome), ("main-menu", "entered"));
    let action = "https://hooks.example.com/twilio/voice/menu?flow=main-menu&amp;no_input=0&amp;invalid=0#ct=1000&amp;rt=4000&amp;tt=8000&amp;rc=1&amp;rp=ct,rt,5xx";
    assert!(
        xml.contains(&format!(
            r#"<Gather input="dtmf speech" action="{action}" method="POST" timeout="5" numDigits="1" speechTimeout="auto" hints="sales, buy, support, help, standup, meeting, message, voicemail" language="en-US"><Say voice="Polly.Joanna" language="en-US">Thanks for calling Acme."#
        )),
        "{xml}"
    );
    assert!(
        xml.ends_with(&format!(
            r#"</Gather><Redirect method="POST">{action}</Redirect></Response>"#
        )),
        "{xml}"
    );
}

#[test]
fn menu_choices_by_digits_and_by_speech() {
    let flows = built_in();
    let menu = step("/twilio/voice/menu", "flow=main-menu&no_input=0&invalid=0");
    let (r, _) = render(&flows, &menu, &params(&[("Digits", "1")]));
    assert_eq!((r.flow.as_str(), r.outcome), ("sales", "chose"));
    let (r, xml) = render(&flows, &menu, &params(&[("Digits", "3")]));
    assert_eq!(r.flow, "standup");
    assert!(xml.contains("<Conference "), "{xml}");
    let (r, _) = render(
        &flows,
        &menu,
        &params(&[
            ("SpeechResult", "I'd like Support, please."),
            ("Confidence", "0.9"),
        ]),
    );
    assert_eq!((r.flow.as_str(), r.outcome), ("support", "chose"));
    // Whole words only: "salesforce" is not "sales".
    let (r, _) = render(&flows, &menu, &params(&[("SpeechResult", "salesforce")]));
    assert_eq!(r.outcome, "invalid");
}

#[test]
fn invalid_and_missing_input_retry_a_bounded_number_of_times_then_fall_back() {
    let flows = built_in();
    let (r, xml) = render(
        &flows,
        &step("/twilio/voice/menu", "flow=main-menu&no_input=0&invalid=0"),
        &params(&[("Digits", "9")]),
    );
    assert_eq!((r.flow.as_str(), r.outcome), ("main-menu", "invalid"));
    assert!(
        xml.contains(">Sorry, that&apos;s not one of the options.</Say><Gather"),
        "{xml}"
    );
    assert!(xml.contains("no_input=0&amp;invalid=1"), "{xml}");

    let (r, xml) = render(
        &flows,
        &step("/twilio/voice/menu", "flow=main-menu&no_input=1&invalid=1"),
        &params(&[]),
    );
    assert_eq!(r.outcome, "no-input");
    assert!(
        xml.contains(">Sorry, I didn&apos;t hear anything.</Say><Gather"),
        "{xml}"
    );
    assert!(xml.contains("no_input=2&amp;invalid=1"), "{xml}");

    // retries = 2: the third miss of one kind goes to the fallback.
    for query in [
        "flow=main-menu&no_input=2&invalid=0",
        "flow=main-menu&no_input=0&invalid=2",
    ] {
        let p = if query.contains("no_input=2") {
            params(&[("Digits", "")])
        } else {
            params(&[("Digits", "7")])
        };
        let (r, xml) = render(&flows, &step("/twilio/voice/menu", query), &p);
        assert_eq!(
            (r.flow.as_str(), r.outcome),
            ("voicemail", "retries-exhausted"),
            "{query}"
        );
        assert!(xml.contains("<Record "), "{xml}");
        assert!(!xml.contains("<Gather"), "{xml}");
    }
}

#[test]
fn voicemail_records_with_transcription_then_says_goodbye() {
    let flows = built_in();
    let (r, xml) = render(&flows, &step("/twilio/voice", ""), &inbound("+14155550103"));
    assert_eq!(r.flow, "voicemail");
    assert_eq!(
        body(&xml),
        r##"<Response><Say voice="Polly.Joanna" language="en-US">Please leave a message after the tone, then press the pound key.</Say><Record action="https://hooks.example.com/twilio/voice/recorded?flow=voicemail#ct=1000&amp;rt=4000&amp;tt=8000&amp;rc=1&amp;rp=ct,rt,5xx" method="POST" finishOnKey="#" maxLength="120" playBeep="true" recordingStatusCallback="https://hooks.example.com/twilio/recording#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all" recordingStatusCallbackEvent="in-progress completed absent" transcribe="true" transcribeCallback="https://hooks.example.com/twilio/transcription#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all"/><Say voice="Polly.Joanna" language="en-US">Thank you. Goodbye.</Say><Hangup/></Response>"##
    );
    let (r, xml) = render(
        &flows,
        &step("/twilio/voice/recorded", "flow=voicemail"),
        &params(&[("RecordingSid", "RE1")]),
    );
    assert_eq!(r.outcome, "goodbye");
    assert!(body(&xml).ends_with("Thank you. Goodbye.</Say><Hangup/></Response>"));
}

#[test]
fn conference_joins_the_room_with_room_and_recording_callbacks() {
    let (r, xml) = render(
        &built_in(),
        &step("/twilio/voice", ""),
        &inbound("+14155550102"),
    );
    assert_eq!(r.flow, "standup");
    assert!(
        xml.contains(r#"<Dial><Conference beep="true" startConferenceOnEnter="true" endConferenceOnExit="false" record="record-from-start" statusCallback="https://hooks.example.com/twilio/conference#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all" statusCallbackEvent="start end join leave mute hold modify" statusCallbackMethod="POST" recordingStatusCallback="https://hooks.example.com/twilio/recording#ct=2000&amp;rt=5000&amp;tt=15000&amp;rc=2&amp;rp=all" recordingStatusCallbackEvent="in-progress completed absent">daily-standup</Conference></Dial>"#),
        "{xml}"
    );
}

#[test]
fn softphone_dials_the_requested_number_from_the_verified_caller_id() {
    let flows = built_in();
    let call = |to: &str| {
        let p = params(&[
            ("CallSid", "CA2"),
            ("From", "client:alice"),
            ("To", to),
            ("Direction", "inbound"),
        ]);
        render(&flows, &step("/twilio/voice", ""), &p)
    };
    let (r, xml) = call("+16285550199");
    assert_eq!((r.flow.as_str(), r.outcome), ("softphone", "entered"));
    assert!(
        xml.contains(r#"callerId="+14155550100" timeout="30" record="record-from-answer-dual""#),
        "{xml}"
    );
    assert!(xml.contains(r#"answerOnBridge="true""#), "{xml}");
    assert!(xml.contains(">+16285550199</Number></Dial>"), "{xml}");
    let (_, xml) = call("client:bob");
    assert!(xml.contains(">bob</Client>"), "{xml}");
    for refused in [
        "+442071838750",
        // +1, but Jamaica; and a US premium-rate number.
        "+18765551234",
        "+19005551234",
        "client:bob|x",
        "",
        "911",
        "client:",
        "client:bob<x>",
        "sip:x@evil.example",
    ] {
        let (r, xml) = call(refused);
        assert_eq!(r.outcome, "refused", "{refused}");
        assert!(!xml.contains("<Dial"), "{refused}: {xml}");
        assert!(xml.ends_with("<Hangup/></Response>"), "{xml}");
    }
    // A softphone Dial that nobody answers ends audibly.
    let (r, xml) = render(
        &flows,
        &step("/twilio/voice/dial", "flow=softphone"),
        &params(&[("DialCallStatus", "busy")]),
    );
    assert_eq!(r.outcome, "hangup");
    assert!(xml.contains("could not be completed"), "{xml}");
}

#[test]
fn anything_wrong_gets_the_apology_and_the_fallback_flow() {
    let flows = built_in();
    let cases = [
        (step("/twilio/voice", "flow=no-such-flow"), "unknown flow"),
        (step("/twilio/voice/menu", "flow=sales"), "is not a menu"),
        (
            step("/twilio/voice/dial", "flow=voicemail"),
            "does not dial",
        ),
        (
            step("/twilio/voice/recorded", "flow=main-menu"),
            "is not a voicemail",
        ),
        (
            step("/twilio/voice/menu", "flow=gone&no_input=1"),
            "unknown flow",
        ),
    ];
    for (s, problem) in cases {
        let (r, xml) = render(&flows, &s, &inbound("+14155550100"));
        assert_eq!(
            (r.flow.as_str(), r.outcome),
            ("voicemail", "apology"),
            "{s:?}"
        );
        assert!(
            r.problem.as_deref().unwrap().contains(problem),
            "{s:?}: {:?}",
            r.problem
        );
        assert!(body(&xml).starts_with(r#"<Response><Say voice="Polly.Joanna" language="en-US">Sorry, we can&apos;t connect your call right now.</Say><Say"#), "{xml}");
        assert!(xml.contains("<Record "), "{xml}");
    }
    // No default route: an unknown number is a problem too.
    let no_default = BUILT_IN.replace("default = \"main-menu\"\n", "");
    let flows = Flows::parse(&no_default, "t.toml").unwrap();
    let (r, _) = render(&flows, &step("/twilio/voice", ""), &inbound("+19995550000"));
    assert_eq!(r.outcome, "apology");
    assert!(r.problem.unwrap().contains("no flow for number"));
}

#[test]
fn the_safe_answer_when_flows_are_unreadable_is_valid_twiml() {
    let xml = safe_twiml("Sorry.").to_xml();
    twiml::check(&xml).unwrap();
    assert!(xml.ends_with("<Say>Sorry.</Say><Hangup/></Response>"));
}

#[test]
fn steps_come_from_the_path_and_query() {
    assert_eq!(step("/twilio/voice", ""), Step::Enter { flow: None });
    assert_eq!(
        step("/twilio/voice/", "flow=x"),
        Step::Enter {
            flow: Some("x".into())
        }
    );
    assert_eq!(
        step("/twilio/voice/menu", "flow=m&no_input=2"),
        Step::Menu {
            flow: "m".into(),
            no_input: 2,
            invalid: 0
        }
    );
    assert_eq!(
        step("/twilio/voice/dial", "flow=s"),
        Step::DialDone { flow: "s".into() }
    );
    assert_eq!(
        step("/twilio/voice/recorded", "flow=v"),
        Step::Recorded { flow: "v".into() }
    );
    for (path, query, why) in [
        ("/twilio/voice/menu", "", "no flow"),
        ("/twilio/voice/menu", "flow=m&invalid=-1", "not a count"),
        ("/twilio/voice/menu", "flow=m&invalid=%zz", "percent"),
        ("/twilio/voicemail", "", "no voice route"),
        ("/twilio/status", "", "no voice route"),
    ] {
        let err = Step::from_request(path, query).unwrap_err().to_string();
        assert!(err.contains(why), "{path}?{query}: {err}");
    }
}

#[test]
fn every_answer_the_built_in_flows_can_give_is_valid_twiml() {
    let flows = built_in();
    let mut steps: Vec<(Step, Params)> = Vec::new();
    for (number, _) in flows.numbers() {
        steps.push((step("/twilio/voice", ""), inbound(number)));
    }
    for name in flows.names() {
        let q = format!("flow={name}");
        steps.push((step("/twilio/voice", &q), inbound("+14155550100")));
        for s in ["busy", "completed", "no-answer"] {
            steps.push((
                step("/twilio/voice/dial", &q),
                params(&[("DialCallStatus", s)]),
            ));
        }
        steps.push((step("/twilio/voice/recorded", &q), params(&[])));
        for (n, i) in [(0, 0), (2, 0), (0, 2), (3, 3)] {
            let q = format!("flow={name}&no_input={n}&invalid={i}");
            for digits in ["", "1", "2", "3", "4", "9"] {
                steps.push((
                    step("/twilio/voice/menu", &q),
                    params(&[("Digits", digits)]),
                ));
            }
        }
    }
    let mut outcomes = BTreeSet::new();
    for (s, p) in &steps {
        let (r, _) = render(&flows, s, p);
        outcomes.insert(r.outcome);
    }
    let all = [
        "apology",
        "chose",
        "dial-fallback",
        "entered",
        "goodbye",
        "hangup",
        "invalid",
        "no-input",
        "retries-exhausted",
    ];
    assert_eq!(outcomes, all.into_iter().collect(), "{} steps", steps.len());
}

#[test]
fn errors_name_the_line() {
    let bad = r#"
[routes]
default = "mian-menu"

[routes.numbers]
"4155550100" = "main-menu"

[fallback]
message = "Sorry."
flow = "main-menu"

[flows.main-menu]
kind = "menu"
prompt = "Press 1."
retries = 9
no_input = "?"
invalid = "?"
fallback = "loop-a"
choices = [{ digits = "1", flow = "salez" }, { digits = "1", flow = "main-menu" }]

[flows.loop-a]
kind = "forward"
dial = ["+14155550123", "tel:123"]
fallback = "loop-b"

[flows.loop-b]
kind = "forward"
dial = ["client:x"]
timeout = 1
fallback = "loop-a"

[flows."Bad Name"]
kind = "conference"
room = ""
"#;
    let err = Flows::parse(bad, "flows.toml").unwrap_err();
    let text = err.to_string();
    let expect = [
        "flows.toml:3: routes.default names unknown flow \"mian-menu\"",
        "flows.toml:6: \"4155550100\" is not an E.164 number",
        "flows.toml:10: fallback.flow must need no input",
        "flows.toml:12: flow \"main-menu\": retries 9 is over 5",
        "flows.toml:12: flow \"main-menu\": choice 1 names unknown flow \"salez\"",
        "flows.toml:12: flow \"main-menu\": choice 2: digits \"1\" are used twice",
        "flows.toml:21: flow \"loop-a\": dial target \"tel:123\" is not",
        "flows.toml:21: flow \"loop-a\": its fallbacks loop back to it",
        "flows.toml:26: flow \"loop-b\": timeout 1 is outside 5..=600 seconds",
        "flows.toml:26: flow \"loop-b\": its fallbacks loop back to it",
        "flows.toml:32: flow \"Bad Name\": names use a-z",
        "flows.toml:32: flow \"Bad Name\": room is empty",
    ];
    for line in expect {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(err.problems.len(), expect.len(), "{text}");
}

#[test]
fn syntax_and_shape_errors_name_the_line_too() {
    let err = Flows::parse("[routes]\ndefault = \"a\"\n[fallback\n", "f.toml").unwrap_err();
    assert_eq!(err.problems[0].0, 3, "{err}");
    let unknown_key = BUILT_IN.replace("max_length = 120", "max_lenght = 120");
    let err = Flows::parse(&unknown_key, "f.toml")
        .unwrap_err()
        .to_string();
    let line = BUILT_IN
        .lines()
        .position(|l| l.contains("max_length = 120"))
        .unwrap();
    assert!(err.contains("max_lenght"), "{err}");
    // serde reports an unknown field at its table.
    assert!(err.starts_with("f.toml:"), "{err}");
    let reported: usize = err.split(':').nth(1).unwrap().parse().unwrap();
    assert!(
        reported <= line + 1 && line + 1 - reported < 10,
        "{err} (key on line {})",
        line + 1
    );
}

proptest! {
    /// Whatever ops write in prompts and whatever a caller's params hold, the answer is a
    /// well-formed document Twilio accepts.
    #[test]
    fn any_prompt_and_any_params_make_well_formed_twiml(
        prompt in any::<String>(),
        message in any::<String>(),
        to in any::<String>(),
        digits in any::<String>(),
        speech in any::<String>(),
        flow in "[a-z-]{1,12}",
    ) {
        let toml_text = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let source = BUILT_IN
            .replace(
                "prompt = \"Please leave a message after the tone, then press the pound key.\"",
                &format!("prompt = {}", toml_text(&prompt)),
            )
            .replace(
                "message = \"Sorry, we can't connect your call right now.\"",
                &format!("message = {}", toml_text(&message)),
            );
        let flows = Flows::parse(&source, "p.toml");
        prop_assume!(flows.is_ok()); // an empty fallback message is refused, rightly
        let flows = flows.unwrap();
        let p = params(&[("From", "client:alice"), ("To", &to), ("Digits", &digits), ("SpeechResult", &speech)]);
        for s in [
            step("/twilio/voice", ""),
            step("/twilio/voice", &format!("flow={flow}")),
            step("/twilio/voice/menu", "flow=main-menu&no_input=2&invalid=2"),
            Step::Enter { flow: Some(to.clone()) },
        ] {
            let xml = flows.render(&s, &p, &Urls::new(BASE)).twiml.to_xml();
            prop_assert!(twiml::check(&xml).is_ok(), "{:?}: {}", twiml::check(&xml), xml);
            prop_assert!(!matches!(flows.render(&s, &p, &Urls::new(BASE)).twiml.verbs.last(), None | Some(Verb::Pause(_))));
        }
    }
}
