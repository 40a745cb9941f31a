//! `sftp-forward-smoke`, run by `deploy/demo --aws`: the smoke test an operator runs after
//! `deploy/provision apply` on real AWS; see [`sftp_forward_smoke::aws`].

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Deliver a sample file through a stack on real AWS and run its egress self-check.
///
/// Exit codes: 0 the sample was delivered and the egress check passed, 1 one of them did not,
/// 2 the smoke test itself could not run.
#[derive(Parser, Debug)]
#[command(name = "sftp-forward-smoke", version)]
struct Args {
    /// The stack name given to deploy/provision.
    #[arg(long, default_value = "sftp-forward")]
    stack: String,
    /// How long to wait for the sample's delivery receipt, in seconds.
    #[arg(long, default_value_t = 120)]
    wait_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    let wait = Duration::from_secs(args.wait_secs);
    match runtime.block_on(sftp_forward_smoke::aws::run(&args.stack, wait)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("smoke: FAILED (see above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("smoke: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
