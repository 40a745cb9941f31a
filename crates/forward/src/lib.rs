//! Stream any byte source to a partner's SFTP server: pinned host keys, atomic
//! publish, verified size. The Lambda, the CLI and the benchmarks all call this.
//!
//! # Layout
//! In the order a file travels:
//! - [`config`]: the partner JSON (Secrets Manager) → validated [`Partner`]
//! - [`route`]: object key → escape-proof [`RemotePath`] under `RemoteDirectory`
//! - [`pgp`]: the partner's `Pgp` keys; files encrypted as they stream out ([`Pgp::encrypt`])
//! - [`hostkey`]: `TrustedHostKeys` pinning and fingerprints
//! - [`algorithms`]: the partner's `Algorithms` policy (default, fips, legacy, explicit lists)
//! - [`handshake`]: SSH connect with those algorithms, host key check, what was negotiated;
//!   [`scan_host_key`] for onboarding
//! - `auth`: login by key, password or keyboard-interactive, following the server's methods
//! - [`session`]: SFTP channels on the logged-in connection; [`Connector`] reuse
//! - [`publish`]: temp name → pipelined writes → size check → version check → rename; resume
//!   of an interrupted file, sweep of stale temp files
//! - [`interrupt`]: a publish stopped from outside (a deadline): its temp file closed and
//!   removed, or kept with its progress when resumable
//! - [`error`]: one [`Error`], each variant transient or permanent

pub mod algorithms;
mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod handshake;
pub mod hostkey;
pub mod interrupt;
pub mod marker;
pub mod pgp;
pub mod publish;
pub mod route;
pub mod session;
pub mod upload;

pub use self::pgp::Pgp;
pub use algorithms::{Algorithms, Policy};
pub use config::{ConfigError, Partner};
pub use error::{Error, ErrorClass};
pub use handshake::{scan_host_key, Negotiated};
pub use hostkey::{Fingerprint, TrustedHostKeys};
pub use interrupt::{Abandoned, Kept};
pub use publish::{
    Currency, FileRanges, Overwrite, Progress, PublishOutcome, Published, RangeSource,
};
pub use route::{RemotePath, Route, RouteError, RouteInputs};
pub use session::{Connector, Session, Tuning};
pub use upload::Upload;
