//! Twilio's side of the contract: request signatures and webhook parameters.

pub mod params;
pub mod signature;

pub use params::{CallStatus, Params, StatusCallback};
