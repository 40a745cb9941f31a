//! `sftp-forward-demo`, run by `deploy/demo`: the main job end to end.
//!
//! - Offline (default): moto as AWS, the egress testbed's network namespaces as the VPC, the real
//!   OpenSSH sshd as the partner behind its allowlist. `deploy/provision apply` builds the stack
//!   on moto; this program plays the part of Lambda's SQS event source mapping (receive a batch,
//!   invoke, delete only what the function did not report failed) for the `bootstrap` running in
//!   each private-subnet namespace; see [`offline`].
//! - `--aws`: the same job against a stack that `deploy/provision apply` built on real AWS: upload
//!   a sample, wait for the function's delivery receipt, run the egress self-check; see [`aws`].
//!
//! Both share [`job`]: the sample file, the upload, the wait for the receipt, the check's report.

mod aws;
mod job;
mod offline;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Deliver sample files through sftp-forward end to end and show what the partner saw.
#[derive(Parser, Debug)]
#[command(name = "sftp-forward-demo", version)]
pub struct Args {
    /// Use the real AWS account of this shell (AWS_PROFILE, AWS_REGION) and the stack that
    /// `deploy/provision apply` built there, instead of the offline emulation.
    #[arg(long)]
    pub aws: bool,
    /// The stack name given to deploy/provision.
    #[arg(long, default_value = "sftp-forward")]
    pub stack: String,
    /// Offline: keep everything running after the demo (until Ctrl-C) and print how to look at it.
    #[arg(long)]
    pub keep: bool,
    /// Offline: the function zip handed to `deploy/provision apply` (deploy/demo makes one from
    /// the `bootstrap` binary).
    #[arg(long)]
    pub zip: Option<PathBuf>,
    /// Offline: the `bootstrap` binary to run in the private subnets (default: next to this one).
    #[arg(long)]
    pub bootstrap: Option<PathBuf>,
    /// How long to wait for each file's delivery receipt, in seconds.
    #[arg(long, default_value_t = 120)]
    pub wait_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    let result = if args.aws {
        runtime.block_on(aws::run(&args))
    } else {
        runtime.block_on(offline::run(&args))
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: FAILED (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("demo: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
