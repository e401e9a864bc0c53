//! The local stack the demo and the integration tests run on: no Docker, no AWS account.
//!
//! - [`emulator`]: moto's server on a free loopback port, the AWS APIs the SDK talks to;
//! - [`deploy`]: `infra/template.yaml` through the SAM transform and onto the emulator's
//!   CloudFormation; what the stack made, read back (functions, mappings, routes);
//! - [`functions`]: the real function binaries under `cargo lambda watch`, an instance per
//!   request in flight as Lambda scales them, behind [`lambda_apis`] (each invocation's
//!   deadline, billed duration and count in flight);
//! - [`gateway`]: API Gateway's JWT authorizer in front of the softphone-token route, and a
//!   local identity provider's key;
//! - [`poller`]: the SQS event source mapping Lambda would run;
//! - [`transcribe_completer`]: the one emulated step, what AWS does when a Transcribe job
//!   finishes (output document, EventBridge event);
//! - [`faults`]: a fault-injecting proxy in front of the emulator, and a counter of what
//!   each function asks of AWS;
//! - [`rooms`]: the demo's check of the conference rooms the calls joined;
//! - [`chaos`]: `make chaos`, the demo with the faults turned up;
//! - [`local_stack`]: all of it as one value that stops everything when dropped;
//! - [`bench`](mod@bench) and [`coldstart`]: `make bench`'s report.

pub mod audit;
pub mod bench;
pub mod chaos;
pub mod coldstart;
pub mod demo;
pub mod deploy;
pub mod emf;
pub mod emulator;
pub mod faults;
pub mod functions;
pub mod gateway;
pub mod lambda_apis;
pub mod local_stack;
pub mod poller;
pub mod process;
pub mod reconcile;
pub mod rehearsal;
pub mod rooms;
pub mod sample_events;
pub mod schedule;
pub mod task;
pub mod transcribe_completer;
pub mod workspace;

pub use local_stack::{LocalStack, StackOptions};
