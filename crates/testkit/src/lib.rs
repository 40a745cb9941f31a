//! Real servers for the integration tests: Debian's OpenSSH `sshd` as the partner's SFTP server
//! (see [`sshd`](mod@sshd): one shared per test binary, or one per test in a partner's
//! [`style`]), and the moto server as AWS (see [`moto`](mod@moto)).

// This harness calls libc (flock, kill, setns), which the workspace's `unsafe_code = "deny"`
// refuses in the shipped crates; each call carries its SAFETY note.
#![allow(unsafe_code)]

pub mod delay;

/// The checkout being tested: `SFTP_FORWARD_REPO` if set (`deploy/demo` sets it), else two levels
/// above the package cargo is running (`CARGO_MANIFEST_DIR` at run time), else where testkit was
/// compiled. Not the compile-time path first: a target dir shared between checkouts (as here and
/// in CI) can hand one checkout a testkit compiled in another, whose directory may be gone.
pub fn repo_root() -> PathBuf {
    let is_repo = |p: &Path| p.join("tests/egress/testbed").is_file();
    std::env::var_os("SFTP_FORWARD_REPO")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map(|dir| Path::new(&dir).join("../.."))
                .filter(|root| is_repo(root))
        })
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}
pub mod testbed;
pub use testbed::Testbed;
pub mod moto;
pub mod noise;
pub mod zip;
pub use moto::{moto, moto_on, Moto};
pub use noise::noise;
pub use zip::zip_with;
pub mod s3_bed;
pub mod strict_aws;
pub use s3_bed::{s3_bed, S3Bed};
pub use strict_aws::{strict_aws, StrictAws};
pub mod runtime_api;
pub use runtime_api::{Function, Invocation, RuntimeApi};
pub mod echo;
pub mod gpg;
pub use echo::EchoServer;
pub mod watch;
pub use watch::Watch;
mod procs;
pub(crate) use procs::watchdog;
pub mod sshd;
pub use sshd::{scratch_dir, sshd, sshd_in_netns, sshd_limited, sshd_styled, ClientKeys, Sshd};
pub mod style;
pub use style::{HostKey, Login, Style};

use std::path::{Path, PathBuf};
