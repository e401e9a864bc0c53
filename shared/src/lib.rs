//! `voicehooks`, the library every function uses (in the folder `shared/`). Domain logic
//! lives here, behind small traits (a queue, a call store, a recording store, a source of
//! auth tokens), so it is tested without Lambda; the AWS-backed implementations sit beside
//! the traits, and an in-memory one beside each store.
//!
//! - Taking a webhook: [`twilio`] (signatures, params, TwiML, connection overrides, the
//!   REST API), [`webhook`] (the acknowledge contract), [`voice`] and [`flows`] (the voice
//!   webhook and its call flows), [`softphone`] (Access Tokens), [`events`] (the queue
//!   envelope), [`queue`] and [`spill`] (where an accepted event goes).
//! - Working it off: [`worker`] (batches, settling, dead letters), [`calls`] (call state and
//!   rooms, the status worker), [`recording`] (recordings' state, the archive to S3),
//!   [`transcribe`] (jobs and transcripts), [`reconcile`] (Twilio's REST API as the source
//!   of truth).
//! - Around them: [`lambda`] (event shapes and each function's wiring), [`aws`] (SDK
//!   clients), [`dynamodb`] (the calls table's items), [`secrets`], [`config`],
//!   [`stack_names`], [`metrics`], [`telemetry`].

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
