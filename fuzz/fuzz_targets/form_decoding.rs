//! Form and JSON bodies decode or are refused, never panic; what decodes re-encodes to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voicehooks::twilio::Params;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = Params::from_form(data) {
        let again =
            Params::from_form(params.to_form().as_bytes()).expect("our own encoding decodes");
        assert_eq!(again, params);
    }
    if let Ok(params) = Params::from_json(data) {
        let again =
            Params::from_form(params.to_form().as_bytes()).expect("our own encoding decodes");
        assert_eq!(again, params);
    }
});
