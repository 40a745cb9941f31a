//! `sftp-forward-demo`, run by `deploy/demo`: the main job end to end.
//!
//! - Offline (default): moto as AWS, the egress testbed's network namespaces as the VPC, the real
//!   OpenSSH sshd as the partner behind its allowlist. `deploy/provision apply` builds the stack
//!   on moto; this program plays the part of Lambda's SQS event source mapping (receive a batch,
//!   invoke, delete only what the function did not report failed) for the `bootstrap` running in
//!   each private-subnet namespace; see [`offline`].
//!
//! `deploy/demo --aws` (the same job against a stack on real AWS) is another binary,
//! `sftp-forward-smoke` (crates/smoke), which links no test harness; this one shares its
//! [`job`](sftp_forward_smoke::job): the sample file, the upload, the wait for the receipt, the
//! check's report.

mod mapping;
mod offline;
mod partners;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Deliver sample files through sftp-forward end to end and show what the partner saw.
#[derive(Parser, Debug)]
#[command(name = "sftp-forward-demo", version)]
pub struct Args {
    /// The stack name given to deploy/provision.
    #[arg(long, default_value = "sftp-forward")]
    pub stack: String,
    /// Keep everything running after the demo (until Ctrl-C) and print how to look at it.
    #[arg(long)]
    pub keep: bool,
    /// The function zip handed to `deploy/provision apply` (default: a placeholder package, since
    /// moto stores the code without running it and this program runs `bootstrap` itself).
    #[arg(long)]
    pub zip: Option<PathBuf>,
    /// The `bootstrap` binary to run in the private subnets (default: next to this one).
    #[arg(long)]
    pub bootstrap: Option<PathBuf>,
    /// How long to wait for each file's delivery receipt, in seconds.
    #[arg(long, default_value_t = 120)]
    pub wait_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    match runtime.block_on(offline::run(&args)) {
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
