//! voicectl: the operator's tool. `simulate` is the Twilio stand-in; `media` serves its
//! recordings the way Twilio's API does.

pub mod media;
pub mod simulate;
