//! The command line: what an operator can type, with `--help` text a newcomer understands.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use forward::{Overwrite, RemotePath};
use sftp_forward_core::check::{EchoUrl, DEFAULT_ECHO_URL};
use sftp_forward_core::env;

use crate::s3url::{S3Url, Since, Source};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  unexpected error (a bug or an unclassified failure: see the message)
  2  usage error (unknown flag, bad value)
  3  configuration: the partner secret cannot be read or is invalid
  4  transient failure: network, timeout, busy server or S3/SQS hiccup; retrying later may work
  5  permanent failure: an operator must act (missing object, refused path, permission, ...)
  6  the partner's host key is not in TrustedHostKeys (nothing was authenticated or sent)
  7  the partner rejected the login
  8  the login works but RemoteDirectory is not writable
  9  check: this machine's egress IP is not one of the expected IPs

replay and redrive exit 5 if any object failed permanently, else 4 if any failed transiently.
check exits with the code of the first problem it lists (egress before partner): an IP echo
service that cannot be reached is 4, one that does not answer with an IP is 5.
test-connection --all and check --all exit with the code of the first partner (in the stack's
order) that failed; --partner with a name the stack does not have is 3.

AWS region, endpoint and credentials come from the standard AWS configuration
(AWS_REGION, AWS_ENDPOINT_URL, AWS_PROFILE, ...). Secrets are never printed.";

/// Operate the S3 → SFTP forwarder by hand, with the same code the Lambda function runs.
#[derive(Debug, Parser)]
#[command(name = "sftp-forward", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text (progress and logs stay on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// More log lines on stderr (-v: each step, -vv: debug). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to the partner: show its host key and fingerprint, whether the key is trusted,
    /// whether the login works and whether RemoteDirectory is writable.
    #[command(after_help = EXIT_CODES)]
    TestConnection {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        stack: StackArgs,
        /// Every partner of the stack (--stack or --function), concurrently, as one table row
        /// each: host key, login, write probe, verdict.
        #[arg(
            long,
            group = "secret",
            conflicts_with = "print_host_key",
            requires = "stack_of"
        )]
        all: bool,
        /// Print only the server's host key line, ready to paste into TrustedHostKeys after the
        /// partner has confirmed its fingerprint. Only Host and Port of the secret are needed.
        /// The key is never trusted automatically: exits 6 while it is not in TrustedHostKeys.
        #[arg(long)]
        print_host_key: bool,
    },

    /// The egress self-check, as the function runs it for {"check": true}: everything
    /// test-connection shows, plus the public IP this machine's traffic leaves from (asked of an
    /// IP echo service) compared with the IPs the partner allowlists. Any problem is a failure;
    /// with no expected IPs the egress IP is shown but not compared.
    #[command(after_help = EXIT_CODES)]
    Check {
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        stack: StackArgs,
        /// Every partner of the stack (--stack or --function), concurrently, as one table row
        /// each: host key, login, write probe, egress IP seen / expected, verdict.
        #[arg(long, group = "secret", requires = "stack_of")]
        all: bool,
        /// The IP echo service: an http:// or https:// URL whose GET answers with the caller's
        /// IP as plain text.
        #[arg(long, value_name = "URL", env = env::EGRESS_ECHO_URL, default_value = DEFAULT_ECHO_URL)]
        echo_url: EchoUrl,
        /// An IP the partner allowlists (repeat for each, e.g. both NAT gateways' Elastic IPs);
        /// the environment variable takes a comma-separated list. None: with --stack or
        /// --function, the function's SFTP_FORWARD_EXPECTED_EGRESS_IPS; else not compared.
        #[arg(long = "expect-ip", value_name = "IP", env = env::EXPECTED_EGRESS_IPS, value_delimiter = ',', value_parser = ip)]
        expect_ips: Vec<IpAddr>,
    },

    /// Send one file: an S3 object (s3://bucket/key) or a local file, through the same publisher
    /// as the Lambda function. Always sends (an S3 object's delivery receipt is rewritten).
    #[command(after_help = EXIT_CODES)]
    Send {
        /// `s3://bucket/key` or a local file path.
        source: Source,
        /// Remote path under RemoteDirectory (default: the route's mapping of the key, or the
        /// local file's name).
        #[arg(long, value_name = "PATH")]
        remote_path: Option<RemotePath>,
        /// Publish the delivery event of an S3 object to this EventBridge bus (`default`, a name
        /// or an ARN), as the function does (connector-id `sftp-forward-cli`). Without it, no
        /// event. A local file has none.
        #[arg(long, value_name = "BUS")]
        events: Option<String>,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        route: RouteArgs,
    },

    /// Forward every object under an S3 prefix that has no delivery receipt for its current
    /// bytes (all of them with --force), then print a summary table.
    #[command(after_help = EXIT_CODES)]
    Replay {
        /// `s3://bucket/prefix` (`s3://bucket` for the whole bucket).
        prefix: S3Url,
        /// Only objects modified at or after this time: RFC 3339 (2026-11-25T08:00:00Z), a date
        /// (2026-11-25, UTC midnight) or an age back from now (45s, 90m, 6h, 2d). Older objects
        /// are counted as not selected.
        #[arg(long, value_name = "TIME")]
        since: Option<Since>,
        /// Parallel SSH connections to the partner (each sends one file at a time).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// List what would be sent and skipped; connect to nothing, send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Send objects even when their receipt says they were delivered.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        route: RouteArgs,
    },

    /// Re-process a dead-letter queue: forward each message's objects and delete the message
    /// only after they are delivered (or found already delivered); report what remains.
    #[command(after_help = EXIT_CODES)]
    Redrive {
        /// The dead-letter queue's URL.
        #[arg(long, value_name = "URL")]
        dlq: String,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        stack: StackArgs,
        #[command(flatten)]
        route: RouteArgs,
    },
}

/// An IP address, surrounding spaces allowed (`203.0.113.7, 203.0.113.8` in the environment).
fn ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))
}

/// Where the partner connection JSON comes from: one of them (or, where a command has it, `--all`,
/// which joins this group).
#[derive(Debug, Args)]
#[group(id = "secret", required = true, multiple = false)]
pub struct SecretArgs {
    /// Secrets Manager secret (name or ARN) holding the partner JSON, as the Lambda uses.
    #[arg(long, value_name = "ID")]
    pub secret_id: Option<String>,
    /// A local file holding the partner JSON (same format as the secret).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A partner of the stack (--stack or --function), by the name its config gives it
    /// (`default` for a stack's single partner): its secret, and its route unless the route flags
    /// say otherwise. Every key is sent to it (its prefix is still stripped as declared).
    #[arg(long, value_name = "NAME", requires = "stack_of")]
    pub partner: Option<String>,
}

/// The stack whose partners `--partner` and `--all` name: read from its function's environment.
#[derive(Debug, Args)]
#[group(id = "stack_of", multiple = false)]
pub struct StackArgs {
    /// The stack's name, as in the provisioner's config (its function is `<STACK>-forward`).
    #[arg(long, value_name = "STACK")]
    pub stack: Option<String>,
    /// The forwarding function's name or ARN, for a function the provisioner did not name.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
}

/// How object keys map to remote paths: the flags given override the partner's route (with
/// --partner) or the defaults ({key}, nothing stripped, overwrite).
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Remote path template ({key}, {basename}, {dirname}), like the function's REMOTE_PATH_TEMPLATE
    /// (default {key}).
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Prefix removed from keys before mapping, like the function's STRIP_PREFIX.
    #[arg(long, value_name = "PREFIX")]
    pub strip_prefix: Option<String>,
    /// When the remote file exists: overwrite (default), fail-if-exists or skip-if-same-size.
    #[arg(long, value_name = "POLICY", value_parser = overwrite_policy)]
    pub overwrite: Option<String>,
}

/// An overwrite policy's name, checked.
fn overwrite_policy(s: &str) -> Result<String, String> {
    s.parse::<Overwrite>().map(|_| s.to_owned())
}
