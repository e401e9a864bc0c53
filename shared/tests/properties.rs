//! Properties of the ingress path, checked on generated inputs (proptest). The cargo-fuzz
//! targets under `fuzz/` hunt the same code coverage-guided for minutes (`make fuzz`); these
//! run in `make test` in seconds.

#![allow(clippy::unwrap_used)] // test code: an unwrap is an assertion

mod common;

use std::sync::Arc;

use common::*;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use voicehooks::events::Envelope;
use voicehooks::telemetry::mask_phone;
use voicehooks::twilio::signature::{compute_signature, validate_form};
use voicehooks::twilio::twiml::{self, Say, VoiceResponse};
use voicehooks::twilio::{Params, StatusCallback};
use voicehooks::webhook::WebhookRequest;

fn any_params() -> impl Strategy<Value = Params> {
    prop::collection::vec((any::<String>(), any::<String>()), 0..12).prop_map(Params::new)
}

/// A status callback's params with arbitrary extra fields, valid SIDs and status.
fn status_params() -> impl Strategy<Value = Params> {
    (
        "[0-9a-f]{32}",
        prop::sample::select(vec![
            "queued",
            "ringing",
            "in-progress",
            "completed",
            "busy",
        ]),
        any::<Option<u32>>(),
        prop::collection::vec(("[A-Z][a-zA-Z]{0,12}", any::<String>()), 0..8),
    )
        .prop_map(|(hex, status, seq, extra)| {
            let mut pairs: Vec<(String, String)> = extra
                .into_iter()
                .filter(|(k, _)| {
                    !["CallSid", "AccountSid", "CallStatus", "SequenceNumber"].contains(&k.as_str())
                })
                .collect();
            pairs.push(("CallSid".into(), format!("CA{hex}")));
            pairs.push(("AccountSid".into(), ACCOUNT_SID.into()));
            pairs.push(("CallStatus".into(), status.into()));
            if let Some(seq) = seq {
                pairs.push(("SequenceNumber".into(), seq.to_string()));
            }
            Params::new(pairs)
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    /// What Twilio form-encodes, we decode to the same names and values, in order.
    #[test]
    fn form_encoding_round_trips(params in any_params()) {
        let decoded = Params::from_form(params.to_form().as_bytes()).unwrap();
        prop_assert_eq!(decoded, params);
    }

    /// Decoding never panics, whatever the bytes; what decodes re-encodes to itself.
    #[test]
    fn any_bytes_decode_or_are_refused(body in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(params) = Params::from_form(&body) {
            prop_assert_eq!(Params::from_form(params.to_form().as_bytes()).unwrap(), params);
        }
        let _ = Params::from_json(&body);
    }

    /// A signature validates for its URL and params, and for nothing else: any changed value,
    /// another URL or another token is refused.
    #[test]
    fn a_signature_covers_the_url_and_every_value(
        params in any_params().prop_filter("some params", |p| !p.is_empty()),
        path in "/[a-z]{1,10}",
        changed in any::<String>(),
        index in any::<prop::sample::Index>(),
    ) {
        let url = format!("{BASE}{path}");
        let signature = compute_signature(TOKEN, &url, params.iter());
        prop_assert!(validate_form(TOKEN, &url, params.iter(), &signature));
        prop_assert!(!validate_form(OLD_TOKEN, &url, params.iter(), &signature));
        let other_url = url.clone() + "x";
        prop_assert!(!validate_form(TOKEN, &other_url, params.iter(), &signature));
        let at = index.index(params.len());
        let tampered: Vec<(String, String)> = params
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (k.to_owned(), if i == at { changed.clone() } else { v.to_owned() }))
            .collect();
        let original = params.iter().nth(at).unwrap().1.to_owned();
        let tampered = Params::new(tampered);
        if changed != original {
            prop_assert!(!validate_form(TOKEN, &url, tampered.iter(), &signature));
        }
    }

    /// The envelope a status callback becomes survives the queue unchanged.
    #[test]
    fn envelopes_round_trip_through_json(params in status_params(), token in any::<Option<String>>()) {
        let callback = StatusCallback::parse(&params).unwrap();
        let envelope = Envelope::call_status(&callback, &params, token.as_deref());
        let decoded = Envelope::from_json(&envelope.to_json()).unwrap();
        prop_assert_eq!(&decoded, &envelope);
        prop_assert_eq!(decoded.params, params);
    }

    /// Whatever arrives on the queue, decoding answers (never panics).
    #[test]
    fn any_queue_body_decodes_or_is_refused(body in any::<String>()) {
        let _ = Envelope::from_json(&body);
    }

    /// Any request at all gets one of the contract's answers, and nothing is queued unless
    /// it was signed with the token.
    #[test]
    fn any_request_gets_a_contract_answer(
        method in prop::sample::select(vec![Method::POST, Method::GET, Method::PUT]),
        content_type in prop::sample::select(vec![
            "application/x-www-form-urlencoded", "application/json", "text/plain", "",
        ]),
        query in "[a-zA-Z0-9=&%]{0,20}",
        signature in "[A-Za-z0-9+/=]{0,30}",
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let queue = Arc::new(MemoryQueue::default());
        let ack = acknowledger(&queue, None);
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert("content-type", HeaderValue::from_static(content_type));
        }
        headers.insert("x-twilio-signature", HeaderValue::from_str(&signature).unwrap());
        let request = WebhookRequest {
            method: &method,
            headers: &headers,
            raw_path: "/twilio/status",
            raw_query: &query,
            body: &body,
        };
        let reply = runtime().block_on(ack.call_status(&request));
        prop_assert!(
            [StatusCode::BAD_REQUEST, StatusCode::FORBIDDEN, StatusCode::METHOD_NOT_ALLOWED]
                .contains(&reply.status),
            "{} {}", reply.status, reply.body
        );
        prop_assert!(queue.sent().is_empty());
    }

    /// Any text a flow or a caller puts in `<Say>` makes a document Twilio accepts, and says
    /// that text (less the characters XML 1.0 cannot carry).
    #[test]
    fn say_text_is_escaped_into_well_formed_twiml(text in any::<String>(), voice in any::<Option<String>>()) {
        let mut say = Say::new(text.clone());
        say.voice = voice;
        let xml = VoiceResponse::new().push(say).to_xml();
        prop_assert!(twiml::check(&xml).is_ok(), "{:?}: {}", twiml::check(&xml), xml);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let said = doc.root_element().first_element_child().unwrap().text().unwrap_or_default().to_owned();
        let speakable: String = text
            .chars()
            .filter(|c| matches!(c, '\t' | '\n' | '\r') || (*c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}')))
            .collect();
        // XML parsers normalise line ends: \r\n and a lone \r read back as \n.
        prop_assert_eq!(said, speakable.replace("\r\n", "\n").replace('\r', "\n"));
    }

    /// A phone number is never logged whole: the masked form keeps at most its country and
    /// area code and its last three digits.
    #[test]
    fn masked_numbers_hide_the_subscriber(digits in "[0-9]{8,14}") {
        let number = format!("+{digits}");
        let masked = mask_phone(&number);
        prop_assert!(masked.contains("****"));
        prop_assert!(masked.chars().filter(char::is_ascii_digit).count() <= 7);
    }
}
