//! `sftp-forward`: the operator's tool. Parses the command line, runs one command with the same
//! library code as the Lambda function, and maps the result to an exit code (see `--help`).
//!
//! # Layout
//! - [`args`]: the command line and its help text (exit codes listed there)
//! - [`s3url`]: `s3://bucket/key`, send sources, `--since` times
//! - [`setup`]: AWS configuration, partner secret (Secrets Manager or file), forwarder settings
//! - [`stack`]: a stack's partners (`--partner`, `--all`), from its function's environment
//! - [`cmd`]: `test-connection`, `check` (one partner, or `--all` in [`cmd::partners`]), `send`,
//!   `replay`, `redrive`
//! - [`progress`]: progress bar on a terminal, log lines otherwise (stderr)
//! - [`report`]: the summary table or JSON of a batch (stdout)
//! - [`exit`]: failure class → exit code

mod args;
mod cmd;
mod exit;
mod progress;
mod report;
mod s3url;
mod setup;
mod stack;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Unexpected.code());
        }
    };
    let exit = match runtime.block_on(run(&cli)) {
        Ok(exit) => exit,
        Err(err) => {
            let exit = Exit::of_error(&err);
            if cli.json {
                let doc =
                    serde_json::json!({ "error": format!("{err:#}"), "exit_code": exit.code() });
                println!("{doc:#}");
            }
            eprintln!("error: {err:#}");
            exit
        }
    };
    ExitCode::from(exit.code())
}

async fn run(cli: &Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::TestConnection {
            stack, all: true, ..
        } => cmd::partners::run(stack, None, cli.json).await,
        Command::TestConnection {
            secret,
            stack,
            all: false,
            print_host_key,
        } => cmd::test_connection::run(secret, stack, *print_host_key, cli.json).await,
        Command::Check {
            stack,
            all: true,
            echo_url,
            expect_ips,
            ..
        } => {
            let egress = cmd::partners::Egress {
                echo_url,
                expected: expect_ips,
            };
            cmd::partners::run(stack, Some(egress), cli.json).await
        }
        Command::Check {
            secret,
            stack,
            all: false,
            echo_url,
            expect_ips,
        } => cmd::check::run(secret, stack, echo_url, expect_ips, cli.json).await,
        Command::Send {
            source,
            remote_path,
            events,
            secret,
            stack,
            route,
        } => {
            let to = cmd::send::To {
                remote_path: remote_path.clone(),
                events: events.clone(),
            };
            cmd::send::run(source, to, secret, stack, route, cli.json).await
        }
        Command::Replay {
            prefix,
            since,
            concurrency,
            dry_run,
            force,
            secret,
            stack,
            route,
        } => {
            let replay = cmd::replay::Replay {
                prefix,
                since: *since,
                concurrency: *concurrency,
                dry_run: *dry_run,
                force: *force,
                secret,
                stack,
                route,
            };
            cmd::replay::run(replay, cli.json).await
        }
        Command::Redrive {
            dlq,
            secret,
            stack,
            route,
        } => cmd::redrive::run(dlq, secret, stack, route, cli.json).await,
    }
}

/// Library log lines (receipt warnings, reconnects) on stderr: warnings by default, more with -v.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
