//! The operator's smoke test of a stack on real AWS (`deploy/demo --aws`, binary
//! `sftp-forward-smoke`), and the job it shares with the offline demo (crates/demo).
//!
//! # Layout
//! - [`job`]: the stack's outputs, the sample upload, the wait for the delivery receipt, the
//!   egress self-check's report — what both the smoke test and the offline demo do.
//! - [`aws`]: the smoke test itself, against real AWS.
//!
//! Its own crate so that what an operator runs against real AWS links no test harness
//! (`testkit`, which starts sshd and moto, is the offline demo's alone).

pub mod aws;
pub mod job;

use std::path::{Path, PathBuf};

/// The repository root, where `deploy/provision` is: `SFTP_FORWARD_REPO` (set by `deploy/demo`),
/// else the checkout this binary was built from.
pub fn repo() -> PathBuf {
    std::env::var_os("SFTP_FORWARD_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}
