//! Any text in any verb renders to a document Twilio accepts (`twiml::check`): the writer
//! escapes what it must and drops what XML cannot carry. The input is split on NUL into the
//! texts and attributes of a Say, a Dial's Number, a Play and a Redirect.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicehooks::twilio::twiml::{self, Dial, Play, Redirect, Say, VoiceResponse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    let mut say = Say::new(next());
    say.voice = Some(next());
    say.language = Some(next());
    // A Dial needs someone to call and a Redirect somewhere to go: the flows refuse a number
    // or URL without one letter or digit when they load, so the fuzzer fills such in.
    let filled = |s: String, default: &str| {
        if s.chars().any(|c| c.is_ascii_alphanumeric()) {
            s
        } else {
            default.to_owned()
        }
    };
    let dial = Dial {
        number: filled(next(), "+1"),
        caller_id: Some(next()),
        ..Dial::default()
    };
    let play = Play {
        url: next(),
        digits: Some(next()),
        ..Play::default()
    };
    let redirect = Redirect {
        url: filled(next(), "/"),
        method: None,
    };
    let xml = VoiceResponse::new()
        .push(say)
        .push(dial)
        .push(play)
        .push(redirect)
        .to_xml();
    if let Err(e) = twiml::check(&xml) {
        panic!("{e}: {xml}");
    }
});
