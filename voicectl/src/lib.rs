//! voicectl: the operator's tool. Today: `simulate`, the Twilio stand-in.

pub mod simulate;
