//! The application core: what the Lambda function does to a record, as a library with no Lambda
//! runtime in it. The Lambda adapter (crates/lambda, the `bootstrap` binary: runtime loop, deadline,
//! response shaping), the CLI, the bench and the demo all run this same code.
//!
//! # Layout
//! In the order a record travels:
//! - [`event`]: S3 | SQS{S3} | EventBridge payload → [`event::ObjectRef`]s (keys decoded)
//! - [`settings`]: the function's environment ([`env`] names it) → [`settings::Settings`]
//! - [`routing`]: key prefix → partner → route ([`routing::Routing`])
//! - [`secret`]: the partner secret from Secrets Manager
//! - [`source`]: S3 tags and the object body, streamed
//! - [`handler`]: records → [`handler::Outcome`]s → batch response, logs, EMF metrics
//! - [`receipt`]: delivery receipts as object tags
//! - [`after`]: the seam after a record ends, told of every outcome; [`events`], the delivery
//!   events it sends to EventBridge
//! - [`progress`]: an interrupted delivery's progress as an object tag, for the next one to resume
//!
//! Beside the data path, [`check`] is the egress self-check (`{"check": true}`, the CLI's `check`
//! and `test-connection`): host key, login, write probe, and the public IP the partner sees;
//! [`placement`] says which AZ a check covered, [`metrics`] writes the EMF lines.

pub mod after;
pub mod check;
pub mod env;
/// Event decoding lives in its own crate (the fuzz targets build it without the AWS SDKs).
pub use sftp_forward_event as event;
pub mod events;
pub mod handler;
pub mod metrics;
pub mod placement;
pub mod progress;
pub mod receipt;
pub mod routing;
pub mod secret;
pub mod settings;
pub mod source;

pub use handler::{ForwardOptions, Forwarder, HandlerError, Outcome};
pub use settings::Settings;
