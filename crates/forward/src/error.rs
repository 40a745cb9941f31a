//! One error type for the crate. Every variant knows whether retrying can help
//! ([`Error::is_transient`]); callers map that to "retry the event" or "report it
//! for an operator to fix". No variant ever carries a secret value.

use std::io;
use std::time::Duration;

use russh_sftp::protocol::StatusCode;

use crate::config::ConfigError;
use crate::route::RouteError;

/// Whether retrying the same work later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network trouble, a busy or restarting server, a short read: retry.
    Transient,
    /// Configuration, trust, credentials, permissions or the path itself: an operator must act.
    Permanent,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        })
    }
}

/// Everything that can go wrong while connecting to a partner and publishing a file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The partner configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The object key cannot be mapped to a safe remote path.
    #[error(transparent)]
    Route(#[from] RouteError),

    /// The TCP connection to the partner could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },

    /// A network step did not finish within its configured bound.
    #[error("timed out after {after:?} while {step} ({addr})")]
    Timeout {
        step: &'static str,
        addr: String,
        after: Duration,
    },

    /// The SSH layer failed (handshake, key exchange, channel, lost connection).
    #[error("SSH {step} with {addr} failed: {source}")]
    Ssh {
        step: &'static str,
        addr: String,
        #[source]
        source: russh::Error,
    },

    /// The server's host key is not one of `TrustedHostKeys`; nothing was authenticated or sent.
    #[error(
        "host key of {addr} is not trusted: the server offered {algorithm} {fingerprint}; \
         if the partner confirms this key, add its public key line to TrustedHostKeys"
    )]
    UntrustedHostKey {
        addr: String,
        algorithm: String,
        fingerprint: String,
    },

    /// The file is in place, but its done marker could not be written. The retry writes the
    /// marker only (the file is not sent again while it is there with the right size).
    #[error("{path:?} is in place but its done marker was not written: {cause}")]
    MarkerFailed { path: String, cause: Box<Error> },

    /// The batch's files are in place, but its control file could not be written. Their retry
    /// does not send them again while they are there with the right size (on this connector).
    #[error(
        "the batch's control file {path:?} was not written ({files} file(s) in place): {cause}"
    )]
    ControlFailed {
        path: String,
        files: usize,
        cause: Box<Error>,
    },

    /// Another publish of the same final name is running on this connection and the `direct`
    /// convention has no temporary name to keep them apart; retried later.
    #[error("{path:?} is being written by another delivery on this connection; retried")]
    InFlight { path: String },

    /// The server refused to start SFTP on a session channel: the account has no SFTP.
    #[error(
        "{addr} refused to start SFTP for this login (the sftp subsystem request was denied): ask \
         the partner to enable SFTP for the account"
    )]
    SftpRefused { addr: String },

    /// The server rejected the login.
    #[error("login to {addr} as {username:?} was rejected (tried: {methods}){detail}")]
    AuthRejected {
        addr: String,
        username: String,
        methods: String,
        /// What the server would accept and which credential is missing, if known.
        detail: String,
    },

    /// The server's keyboard-interactive login asks something other than the password (a
    /// one-time code, a new password): no retry can answer it.
    #[error(
        "login to {addr} as {username:?} asks {prompt:?} (keyboard-interactive), which sftp-forward \
         cannot answer: it answers only password prompts, with Password; ask the partner for a \
         login by key and/or password without a one-time code for this account"
    )]
    AuthPrompt {
        addr: String,
        username: String,
        /// The server's prompt text (control characters removed).
        prompt: String,
    },

    /// The server and we share no algorithm of one kind; nothing was authenticated or sent.
    #[error(transparent)]
    NoCommonAlgorithm(Box<crate::handshake::NoCommon>),

    /// An SFTP request failed with a status from the server, or the SFTP channel broke. The
    /// cause is said once in the message (not chained: a status repeats its text otherwise).
    #[error(
        "SFTP {op} of {path:?} failed: {}{}",
        reason(cause),
        failure_hint(op, cause)
    )]
    Sftp {
        op: &'static str,
        path: String,
        cause: russh_sftp::client::error::Error,
    },

    /// The server refused to rename the written temporary file onto its final name (the account
    /// may create files but not rename them); the temporary file was removed.
    #[error(
        "the partner refused to rename the uploaded temporary file {temp:?} to {path:?} ({why}): \
         this account may write files but not rename them. Ask the partner to allow renaming \
         files there, or set \"Upload\": \"direct\" in the partner JSON to write under the final \
         name (the partner can then see a growing file: pair it with a done marker)"
    )]
    RenameRefused {
        temp: String,
        path: String,
        /// The server's reason, once.
        why: String,
    },

    /// The final name already exists and the overwrite policy is `fail-if-exists`.
    #[error("{path:?} already exists on the partner and the overwrite policy is fail-if-exists")]
    AlreadyExists { path: String },

    /// Reading the source failed.
    #[error("reading the source failed after {sent} bytes: {source}")]
    Source {
        sent: u64,
        #[source]
        source: io::Error,
    },

    /// The source produced a different number of bytes than announced.
    #[error("the source produced {got} bytes but {expected} were expected")]
    LengthMismatch { expected: u64, got: u64 },

    /// The source was replaced by a newer version while it was sent: the temporary file was
    /// removed and the final name left as it was (it must never hold the older bytes).
    #[error(
        "superseded by a newer version of the source ({current}); {}",
        match direct {
            false => format!("{path:?} was not replaced"),
            true => format!(
                "{path:?} holds these older bytes (the direct upload convention wrote them there) \
                 until the newer version's delivery rewrites it"
            ),
        }
    )]
    Superseded {
        path: String,
        current: String,
        /// Written under the final name (`direct`): left there, complete, not removed.
        direct: bool,
    },

    /// A resumable temporary file was gone at the rename: another delivery of the same object
    /// version (a duplicate event in another process) renamed it into place first. Retrying
    /// finds that delivery's receipt.
    #[error(
        "{path:?} was moved away before the rename, by another delivery of the same version; \
         retried"
    )]
    TempTaken { path: String },

    /// The temporary file to be continued vanished or was cut short between the check of its
    /// progress and its OPEN (removed by another delivery or a sweep); nothing is renamed.
    #[error(
        "the temporary file {path:?} to be continued was removed or cut short meanwhile; the next \
         delivery writes it again from the start"
    )]
    ResumeLost { path: String },

    /// Asking the source whether its bytes are still the current ones failed.
    #[error("checking that the source is still the current version failed: {source}")]
    SourceCheck {
        #[source]
        source: io::Error,
    },

    /// After upload the remote file's size differs from what was sent.
    #[error("remote file {path:?} has {remote} bytes after upload but {sent} were sent")]
    SizeMismatch {
        path: String,
        remote: u64,
        sent: u64,
    },

    /// The SHA-256 taken of the bytes as they were sent differs from the one the source holds
    /// for them (S3's full-object checksum): the temporary file was removed, the final name left
    /// as it was. Retrying reads the same stored bytes and checksum again.
    #[error(
        "the bytes sent have SHA-256 {computed} but the source's own checksum says {expected}; \
         {path:?} was not replaced"
    )]
    ChecksumMismatch {
        path: String,
        expected: String,
        computed: String,
    },
}

impl Error {
    /// Transient or permanent: whether the same work may succeed if retried later.
    pub fn class(&self) -> ErrorClass {
        use ErrorClass::*;
        match self {
            Error::Config(_)
            | Error::Route(_)
            | Error::UntrustedHostKey { .. }
            | Error::AuthRejected { .. }
            | Error::AuthPrompt { .. }
            | Error::NoCommonAlgorithm(_)
            | Error::AlreadyExists { .. }
            | Error::RenameRefused { .. }
            | Error::SftpRefused { .. }
            | Error::Superseded { .. }
            | Error::ChecksumMismatch { .. } => Permanent,
            Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::Source { .. }
            | Error::SourceCheck { .. }
            | Error::TempTaken { .. }
            | Error::InFlight { .. }
            | Error::ResumeLost { .. }
            | Error::LengthMismatch { .. }
            | Error::SizeMismatch { .. } => Transient,
            Error::Ssh { source, .. } => ssh_class(source),
            // Another batch's control file took the name: the next attempt renders a new one.
            Error::ControlFailed { cause, .. }
                if matches!(**cause, Error::AlreadyExists { .. }) =>
            {
                Transient
            }
            Error::MarkerFailed { cause, .. } | Error::ControlFailed { cause, .. } => cause.class(),
            Error::Sftp { cause, .. } => sftp_class(cause),
        }
    }

    /// Shorthand for `class() == Transient`.
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    pub(crate) fn marker(path: &str, cause: Error) -> Self {
        Error::MarkerFailed {
            path: path.to_owned(),
            cause: Box::new(cause),
        }
    }

    pub(crate) fn sftp(
        op: &'static str,
        path: impl Into<String>,
        source: russh_sftp::client::error::Error,
    ) -> Self {
        Error::Sftp {
            op,
            path: path.into(),
            cause: source,
        }
    }

    /// True when the SSH connection itself is gone (not a per-request refusal), so it must be re-opened.
    pub(crate) fn connection_lost(&self) -> bool {
        match self {
            Error::Ssh { .. } | Error::Timeout { .. } => true,
            Error::MarkerFailed { cause, .. } | Error::ControlFailed { cause, .. } => {
                cause.connection_lost()
            }
            Error::Sftp { cause, .. } => !matches!(
                cause,
                russh_sftp::client::error::Error::Status(_)
                    | russh_sftp::client::error::Error::Limited(_)
            ),
            _ => false,
        }
    }
}

fn ssh_class(e: &russh::Error) -> ErrorClass {
    use russh::Error as E;
    match e {
        // Algorithm mismatches and bad keys will not fix themselves.
        E::NoCommonAlgo { .. }
        | E::UnknownAlgo
        | E::UnknownKey
        | E::WrongServerSig
        | E::CouldNotReadKey
        | E::Keys(_)
        | E::UnsupportedAuthMethod
        | E::NoAuthMethod
        | E::Version => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

fn sftp_class(e: &russh_sftp::client::error::Error) -> ErrorClass {
    use russh_sftp::client::error::Error as E;
    match e {
        E::Status(status) => match status.status_code {
            StatusCode::PermissionDenied
            | StatusCode::NoSuchFile
            | StatusCode::OpUnsupported
            | StatusCode::BadMessage => ErrorClass::Permanent,
            // SSH_FX_FAILURE covers disk full, quota and server-side trouble: retry later.
            _ => ErrorClass::Transient,
        },
        E::Limited(_) => ErrorClass::Permanent,
        E::IO(_) | E::Timeout | E::UnexpectedPacket | E::UnexpectedBehavior(_) => {
            ErrorClass::Transient
        }
    }
}

/// The cause of an SFTP failure in words, once: a status's text and the server's message only
/// when the message says more (OpenSSH repeats the status text as its message).
pub(crate) fn reason(cause: &russh_sftp::client::error::Error) -> String {
    match cause {
        russh_sftp::client::error::Error::Status(s) => {
            let code = s.status_code.to_string();
            let message = s.error_message.trim();
            if message.is_empty() || message.eq_ignore_ascii_case(&code) {
                code
            } else {
                format!("{code}: {message}")
            }
        }
        other => other.to_string(),
    }
}

/// OpenSSH answers a write it cannot complete with a bare `SSH_FX_FAILURE`: say what it usually means.
fn failure_hint(op: &str, source: &russh_sftp::client::error::Error) -> &'static str {
    match source {
        russh_sftp::client::error::Error::Status(s)
            if s.status_code == russh_sftp::protocol::StatusCode::Failure
                && matches!(op, "write" | "fstat" | "close") =>
        {
            " (the server gave no reason; on a write this is usually a full disk or an exceeded \
             quota on the partner)"
        }
        _ => "",
    }
}
