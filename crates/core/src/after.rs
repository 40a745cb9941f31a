//! The seam after a record ends: whatever must hear of each record's outcome (the delivery
//! events of [`crate::events`] now; the receipt and the metrics can move here later) implements
//! [`AfterRecord`], and the [`Forwarder`](crate::Forwarder) holds one, so no caller threads
//! another type parameter.
//!
//! It is called once per record outcome ([`AfterRecord::ended`], synchronous: it may only
//! queue), then once per invocation before the response ([`AfterRecord::flush`], bounded by a
//! time it must not pass).

use std::future::Future;
use std::pin::Pin;
use std::time::{Instant, SystemTime};

use crate::event::ObjectRef;
use crate::handler::Outcome;

/// What is known of a record beside its [`Outcome`]: filled in as the record goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// When work on the record began (its batch's start; a delivered file's publish start).
    pub started: Option<SystemTime>,
    /// When its outcome was known.
    pub ended: Option<SystemTime>,
    /// The object's size (bytes read from S3).
    pub object_bytes: Option<u64>,
    /// The bytes of the file on the partner, when they differ from the object's (encrypted).
    pub sent_bytes: Option<u64>,
    /// The SHA-256 (lowercase hex) of the bytes that landed, taken as they streamed out.
    pub sha256: Option<String>,
    /// Why a delivered file has no [`Detail::sha256`].
    pub no_sha256: Option<&'static str>,
    /// A short code for a failure (`HOST_KEY_NOT_TRUSTED`, `CHECKSUM_MISMATCH`, ...); see
    /// [`failure_code`].
    pub failure_code: Option<&'static str>,
}

/// Whether a failed record comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// SQS hands the message out again (received fewer times than the queue's `maxReceiveCount`).
    Again,
    /// Nobody retries it: the SQS message has reached `maxReceiveCount`, so a failure sends it to
    /// the dead-letter queue.
    Never,
    /// Not known here: a direct or asynchronous invocation (Lambda retries an asynchronous one up
    /// to its `MaximumRetryAttempts` and then hands it to its on-failure destination without
    /// telling the function which attempt it is), the CLI, or an SQS queue whose
    /// `maxReceiveCount` the function was not given.
    Unknown,
}

impl Retry {
    /// From an SQS message's `ApproximateReceiveCount` and the queue's `maxReceiveCount`.
    pub fn of(receive_count: Option<u32>, max_receive_count: Option<u32>) -> Retry {
        match (receive_count, max_receive_count) {
            (Some(n), Some(max)) if n >= max => Retry::Never,
            (Some(_), Some(_)) => Retry::Again,
            _ => Retry::Unknown,
        }
    }
}

/// One record that ended, as the seam sees it.
#[derive(Clone, Copy, Debug)]
pub struct Ended<'a> {
    /// The object, when the record named one (a record that could not be decoded names none).
    pub obj: Option<&'a ObjectRef>,
    /// The SQS message id (direct invocations have none).
    pub message_id: Option<&'a str>,
    /// How many times SQS handed the message out.
    pub receive_count: Option<u32>,
    /// How it ended.
    pub outcome: &'a Outcome,
    /// What else is known.
    pub detail: &'a Detail,
    /// Whether a failure comes back.
    pub retry: Retry,
    /// The partner: the secret's name (never its value) and `sftp://host:port` when known.
    pub partner: Partner<'a>,
}

/// The partner a record went (or was to go) to, without anything secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct Partner<'a> {
    /// The partner's name (see [`crate::routing`]); `None` when no partner owns the key.
    pub name: Option<&'a str>,
    /// Its Secrets Manager secret's name or ARN.
    pub secret_id: Option<&'a str>,
    /// `sftp://host:port`, once the secret was read.
    pub url: Option<&'a str>,
    /// The partner's `RemoteDirectory`, once the secret was read.
    pub remote_directory: Option<&'a str>,
}

/// A boxed future, so that [`AfterRecord`] can be a trait object.
pub type Flushing<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Hears of every record's outcome. See the module doc.
pub trait AfterRecord: Send + Sync {
    /// One record ended. Only queues: called while other records may still be in flight.
    fn ended(&self, record: &Ended<'_>);
    /// Send what was queued; must be done by `until` (the invocation's deadline less what the
    /// response needs), and must never fail the invocation.
    fn flush(&self, until: Option<Instant>) -> Flushing<'_>;
}

/// The seam when nothing listens (the CLI, the benchmarks, `SFTP_FORWARD_EVENTS=off`).
pub struct Nothing;

impl AfterRecord for Nothing {
    fn ended(&self, _: &Ended<'_>) {}
    fn flush(&self, _: Option<Instant>) -> Flushing<'_> {
        Box::pin(async {})
    }
}

/// [`failure_code`] of a partner whose host key is not pinned (the `HostKeyUntrusted` metric).
pub const HOST_KEY_NOT_TRUSTED: &str = "HOST_KEY_NOT_TRUSTED";

/// A short, stable code for a publish failure, as Transfer Family's `failure-code` gives one.
/// Errors that need an operator's action have their own; the others share the generic ones.
pub fn failure_code(e: &forward::Error) -> &'static str {
    use forward::Error as E;
    match e {
        E::UntrustedHostKey { .. } => HOST_KEY_NOT_TRUSTED,
        E::AuthRejected { .. } | E::AuthPrompt { .. } => "AUTHENTICATION_FAILED",
        E::NoCommonAlgorithm(_) => "NO_COMMON_ALGORITHM",
        E::Connect { .. } => "CONNECTION_FAILED",
        E::Timeout { .. } => "TIMEOUT",
        E::SftpRefused { .. } => "SFTP_REFUSED",
        E::AlreadyExists { .. } => "FILE_ALREADY_EXISTS",
        E::RenameRefused { .. } => "RENAME_REFUSED",
        E::ChecksumMismatch { .. } => "CHECKSUM_MISMATCH",
        E::SizeMismatch { .. } | E::LengthMismatch { .. } => "SIZE_MISMATCH",
        E::Source { .. } | E::SourceCheck { .. } => "SOURCE_READ_FAILED",
        E::MarkerFailed { .. } => "DONE_MARKER_FAILED",
        E::Config(_) | E::Route(_) => "CONFIGURATION",
        e if e.is_transient() => "TRANSIENT",
        _ => "PERMANENT",
    }
}
