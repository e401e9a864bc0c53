//! The library every voicehooks function uses. Domain logic lives here, behind small traits
//! (a queue, a call store, a source of auth tokens), so it is tested without Lambda; the
//! AWS-backed implementations sit beside the traits.

pub mod aws;
pub mod calls;
pub mod config;
pub mod dynamodb;
pub mod events;
pub mod flows;
pub mod lambda;

pub mod metrics;
pub mod queue;
pub mod reconcile;
pub mod recording;
pub mod secrets;
pub mod softphone;
pub mod spill;
pub mod stack_names;
pub mod telemetry;
pub mod transcribe;
pub mod twilio;
pub mod voice;
pub mod webhook;
pub mod worker;

/// An error with every cause after it (`error sending request: client error (Connect): tcp
/// connect error: Connection refused`), for logs and failure reasons: a top-level message
/// alone often hides whether it was DNS, TLS, a refused connection or a timeout.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        // Some errors repeat their source's text in their own: say each thing once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}
