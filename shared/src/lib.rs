//! The library every voicehooks function uses. Domain logic lives here, behind small traits
//! (a queue, a call store, a source of auth tokens), so it is tested without Lambda; the
//! AWS-backed implementations sit beside the traits.

pub mod aws;
pub mod config;
pub mod events;
pub mod flows;
pub mod lambda;
pub mod media;
pub mod metrics;
pub mod queue;
pub mod recording;
pub mod secrets;
pub mod spill;
pub mod stack;
pub mod store;
pub mod telemetry;
pub mod transcribe;
pub mod twilio;
pub mod voice;
pub mod webhook;
pub mod worker;
