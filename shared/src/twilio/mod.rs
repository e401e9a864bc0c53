//! Twilio's side of the contract: request signatures, webhook parameters and TwiML.

pub mod destination;
pub mod identity;
pub mod overrides;
pub mod params;
pub mod rest;
pub mod signature;
pub mod twiml;

pub use params::{
    CallStatus, ConferenceCallback, Params, RecordingCallback, RecordingStatus, RoomEvent,
    StatusCallback, TranscriptionCallback,
};
