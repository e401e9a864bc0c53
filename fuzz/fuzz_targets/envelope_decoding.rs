//! Whatever sits on a queue, the workers' decoding answers without a panic; an envelope that
//! decodes survives another trip through JSON unchanged, and so does its typed event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicehooks::events::Envelope;
use voicehooks::calls::StatusEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(envelope) = Envelope::from_json(text) {
        let again = Envelope::from_json(&envelope.to_json()).expect("our own JSON decodes");
        assert_eq!(again, envelope);
        let _ = StatusEvent::from_envelope(&envelope);
    }
    let _ = voicehooks::transcribe::JobStateChange::from_event(text);
});
