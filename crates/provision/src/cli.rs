//! The command line: subcommands, flags, help text and exit codes (part of the binary only).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use provision::failover::Az;
use provision::RawConfig;

const EXIT_CODES: &str = "\
AWS access: the standard AWS config (AWS_PROFILE/--profile, AWS_REGION/--region, AWS_ENDPOINT_URL, ...).

Exit codes:
  0  done (plan: the plan was printed)
  1  failed: the message names the resource and the next step; apply can simply be run again
     (failover/failback: refused, nothing changed, when the stack or the NAT gateway to route
     through is missing or not available)
  2  bad command line";

/// Builds the sftp-forward stack on AWS: a VPC with two NAT gateways on kept Elastic IPs, the inbox
/// bucket and queue, and the forwarding function. Like terraform: plan, apply, outputs, destroy;
/// and failover/failback of one AZ's route when its NAT gateway is down.
#[derive(Parser)]
#[command(name = "provision", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Stack name: tags every resource (sftp-forward:stack) and prefixes names [default: sftp-forward]
    #[arg(long, global = true)]
    pub stack: Option<String>,
    /// JSON config file (see docs/PROVISION.md); flags override it
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS profile (default: the standard AWS config)
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// AWS region (default: the standard AWS config)
    #[arg(long, global = true)]
    pub region: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Show what apply would create or change, and the fixed monthly cost; changes nothing
    Plan(Inputs),
    /// Create or update the stack; safe to run again (resumes, changes only what differs)
    Apply(Inputs),
    /// Delete the stack in reverse order; keeps the Elastic IPs unless --release-eips
    Destroy {
        /// Also release the two Elastic IPs (the partner's allowlist will then be stale)
        #[arg(long)]
        release_eips: bool,
    },
    /// Print the stack's resources as JSON (vpc, subnets, nat_gateways, private_routes,
    /// elastic_ips, function, ...)
    Outputs,
    /// Route one AZ's private subnet through the OTHER AZ's NAT gateway (its NAT gateway is down):
    /// its traffic then leaves from the other Elastic IP. ReplaceRoute on its route table
    Failover {
        /// The AZ whose NAT gateway is down: one (nat-one, private-one) or two
        #[arg(long, value_name = "one|two")]
        az: Side,
    },
    /// Route each private subnet through its own AZ's NAT gateway again (undoes failover)
    Failback {
        /// Only this AZ's private subnet [default: both]
        #[arg(long, value_name = "one|two")]
        az: Option<Side>,
    },
    /// Add, remove or list the stack's partners: add and remove edit the --config file's
    /// "partners" (the list apply converges to), then apply
    #[command(subcommand)]
    Partner(PartnerCommand),
}

#[derive(Subcommand)]
pub enum PartnerCommand {
    /// Declare a partner in the config file (replacing one of the same name), then apply;
    /// a partner already declared the same way changes nothing
    Add(PartnerArgs),
    /// Remove a partner from the config file, then apply (its queues, mapping, notification,
    /// rule, alarm and own secret go; refused while its queues hold messages)
    Remove {
        /// The partner's name
        name: String,
    },
    /// The partners the stack has (name, prefix, queue, DLQ, port, concurrency), and those the
    /// config declares that are not applied yet
    List,
}

#[derive(Args)]
pub struct PartnerArgs {
    /// The partner's name: 1-32 of a-z, 0-9, '-'
    pub name: String,
    /// Its key prefix in the inbox bucket, e.g. acme/
    #[arg(long)]
    pub prefix: Option<String>,
    /// Its secret's name or ARN [default: sftp-forward/<stack>/<name>]
    #[arg(long)]
    pub secret: Option<String>,
    /// Create (or update) its secret from this partner JSON file; never printed
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Connections to it at once: its event source mapping's MaximumConcurrency (2..1000)
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Object key → remote path [default: {key}]
    #[arg(long, value_name = "TEMPLATE")]
    pub remote_path_template: Option<String>,
    /// Removed from the key before the template [default: the prefix; "" keeps the whole key]
    #[arg(long, value_name = "PREFIX")]
    pub strip_prefix: Option<String>,
    /// overwrite, fail-if-exists or skip-if-same-size [default: overwrite]
    #[arg(long, value_name = "POLICY")]
    pub overwrite: Option<String>,
    /// Its SFTP server (IPv4 or hostname) for the security group [default: its JSON's Host]
    #[arg(long, value_name = "ADDRESS")]
    pub address: Option<String>,
}

impl PartnerArgs {
    /// The config file's entry; a relative secret file is made absolute (the file may be
    /// elsewhere).
    pub fn to_raw(&self) -> std::io::Result<provision::RawPartner> {
        let secret_file = match &self.secret_file {
            Some(p) => Some(std::path::absolute(p)?),
            None => None,
        };
        Ok(provision::RawPartner {
            name: self.name.clone(),
            prefix: self.prefix.clone(),
            secret: self.secret.clone(),
            secret_file,
            address: self.address.clone(),
            remote_path_template: self.remote_path_template.clone(),
            strip_prefix: self.strip_prefix.clone(),
            overwrite: self.overwrite.clone(),
            max_concurrency: self.max_concurrency,
        })
    }
}

/// An AZ of the stack, as failover and failback name it.
#[derive(Clone, Copy, ValueEnum)]
pub enum Side {
    One,
    Two,
}

impl From<Side> for Az {
    fn from(s: Side) -> Az {
        match s {
            Side::One => Az::One,
            Side::Two => Az::Two,
        }
    }
}

#[derive(Args)]
pub struct Inputs {
    /// The function zip from deploy/package [default: $CARGO_TARGET_DIR/lambda/bootstrap/bootstrap.zip,
    /// bootstrap-arm64.zip with --arch arm64]
    #[arg(long, value_name = "PATH")]
    pub zip: Option<PathBuf>,
    /// Create (or update) the partner secret from this JSON file; its content is never printed
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// The partner secret's name or ARN [default: sftp-forward/<stack>/partner]
    #[arg(long)]
    pub secret: Option<String>,
    /// The partner's SFTP server (IPv4 or hostname): the only tcp/22 egress allowed
    #[arg(long, value_name = "ADDRESS")]
    pub partner_address: Option<String>,
    /// The inbox bucket [default: <stack>-inbox]
    #[arg(long)]
    pub bucket: Option<String>,
    /// An Availability Zone; give it twice (AZ A, AZ B)
    #[arg(long = "az", value_name = "AZ")]
    pub azs: Vec<String>,
    /// Use this Elastic IP allocation; give it twice (for nat-one, nat-two)
    #[arg(long = "eip-allocation-id", value_name = "ID")]
    pub eips: Vec<String>,
    /// Most concurrent function instances = connections to the partner [default: 2]
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// The function's instruction set: x86_64 or arm64 (Graviton; build the zip with
    /// `deploy/package --arch arm64`) [default: x86_64]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Mail the alarms to this address (SNS email subscription: nothing is sent until the link in
    /// AWS's confirmation mail is clicked)
    #[arg(long, value_name = "ADDRESS")]
    pub alarm_email: Option<String>,
    /// When the function checks its egress and the partner ({"check": true}): rate(N minutes),
    /// cron(...) or off [default: rate(15 minutes)]
    #[arg(long, value_name = "EXPRESSION")]
    pub self_check_schedule: Option<String>,
}

impl Inputs {
    pub fn to_raw(&self) -> RawConfig {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        RawConfig {
            zip: self.zip.clone(),
            secret_file: self.secret_file.clone(),
            secret: self.secret.clone(),
            partner_address: self.partner_address.clone(),
            bucket: self.bucket.clone(),
            availability_zones: some(&self.azs),
            eip_allocation_ids: some(&self.eips),
            max_concurrency: self.max_concurrency,
            architecture: self.arch.clone(),
            alarm_email: self.alarm_email.clone(),
            self_check_schedule: self.self_check_schedule.clone(),
            ..RawConfig::default()
        }
    }
}

/// `partner list`: one line per partner the stack has, then the declared ones not applied yet.
pub fn partner_table(listed: &[provision::partners::Listed], spec: &provision::Spec) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut lines = vec![format!(
        "{:<20} {:<20} {:<6} {:<11} {:<40} {}",
        "PARTNER", "PREFIX", "PORT", "CONCURRENCY", "QUEUE", "DLQ"
    )];
    for p in listed {
        lines.push(format!(
            "{:<20} {:<20} {:<6} {:<11} {:<40} {}",
            p.name,
            opt(p.prefix.clone()),
            opt(p.port.map(|v| v.to_string())),
            opt(p.max_concurrency.map(|v| v.to_string())),
            p.queue,
            p.dlq
        ));
    }
    for p in &spec.partners {
        if !listed.iter().any(|l| l.name == p.name()) {
            lines.push(format!(
                "{:<20} {:<20} (declared in the config, not applied yet: run apply)",
                p.name(),
                p.spec.prefix.as_deref().unwrap_or("-")
            ));
        }
    }
    if listed.is_empty() && spec.partners.is_empty() {
        lines.push("(no partners: a single-partner stack, see outputs)".into());
    }
    lines.join("\n")
}

/// partner add/remove: the config file is the list of partners; edit it (checked as apply reads
/// it) before anything else, so that the apply that follows converges the stack to it.
pub fn edit_partners(cli: &Cli) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use provision::config::{self, edit::Edit};
    let Command::Partner(cmd) = &cli.command else {
        return Ok(());
    };
    let edit = match cmd {
        PartnerCommand::Add(args) => Edit::Add(args.to_raw().context("the secret file's path")?),
        PartnerCommand::Remove { name } => Edit::Remove(name.clone()),
        PartnerCommand::List => return Ok(()),
    };
    let path = cli.config.as_deref().context(
        "partner add/remove edit the config file that holds the partners: pass --config FILE",
    )?;
    let edited = config::edit::edit_file(path, edit, config::default_zip())?;
    println!("{edited} ({})", path.display());
    Ok(())
}
