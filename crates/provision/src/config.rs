//! Configuration: the raw JSON config file and flags ([`RawConfig`]) checked once into a [`Spec`]
//! whose fields can be trusted, and the fixed topology ([`HALVES`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

pub mod edit;
pub mod partners;

pub use partners::{PartnerConfig, RawPartner};

/// The VPC: one per stack.
pub const VPC_NAME: &str = "Lambda VPC";
/// The VPC's CIDR.
pub const VPC_CIDR: &str = "10.0.0.0/25";
/// The internet gateway.
pub const IGW_NAME: &str = "Lambda internet gateway";
/// The S3 gateway endpoint on the private route tables.
pub const S3_ENDPOINT_NAME: &str = "s3-gateway-endpoint";

/// One Availability Zone's share of the network: a public subnet with a NAT gateway and its
/// Elastic IP, and a private subnet (where the function runs) routed through that NAT gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Half {
    /// The public subnet's Name tag.
    pub public: &'static str,
    /// The public subnet's CIDR.
    pub public_cidr: &'static str,
    /// The private subnet's Name tag.
    pub private: &'static str,
    /// The private subnet's CIDR.
    pub private_cidr: &'static str,
    /// The NAT gateway's Name tag.
    pub nat: &'static str,
    /// The Elastic IP's Name tag.
    pub eip: &'static str,
    /// The public subnet's route table (0.0.0.0/0 → internet gateway).
    pub public_rt: &'static str,
    /// The private subnet's route table (0.0.0.0/0 → this half's NAT gateway).
    pub private_rt: &'static str,
}

/// The two halves, in AZ A and AZ B.
pub const HALVES: [Half; 2] = [
    Half {
        public: "public-one",
        public_cidr: "10.0.0.0/28",
        private: "private-one",
        private_cidr: "10.0.0.32/28",
        nat: "nat-one",
        eip: "eip-one",
        public_rt: "public-one-subnet",
        private_rt: "private-one-subnet",
    },
    Half {
        public: "public-two",
        public_cidr: "10.0.0.16/28",
        private: "private-two",
        private_cidr: "10.0.0.64/28",
        nat: "nat-two",
        eip: "eip-two",
        public_rt: "public-two-subnet",
        private_rt: "private-two-subnet",
    },
];

/// The config file (JSON) as written, merged with flags; every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Stack name; default `sftp-forward`.
    pub stack: Option<String>,
    /// The partner's SFTP server: an IPv4 address or a hostname (resolved at plan/apply time).
    /// Without it the function may reach tcp/22 anywhere.
    pub partner_address: Option<String>,
    /// The inbox bucket; default `<stack>-<account>-<region>` (bucket names are global).
    pub bucket: Option<String>,
    /// Two distinct AZs of the region; default the existing subnets' AZs, else the first two.
    pub availability_zones: Option<Vec<String>>,
    /// The partner secret's name or ARN; default `sftp-forward/<stack>/partner`.
    pub secret: Option<String>,
    /// A file with the partner secret's JSON, used to create (or update) the secret.
    pub secret_file: Option<PathBuf>,
    /// The packaged function (see `deploy/package`).
    pub zip: Option<PathBuf>,
    /// Elastic IP allocation ids to use instead of allocating new ones (two).
    pub eip_allocation_ids: Option<Vec<String>>,
    /// Most concurrent function instances fed by the queue = most connections to the partner.
    pub max_concurrency: Option<u32>,
    /// Records per invocation.
    pub batch_size: Option<u32>,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: Option<u32>,
    /// The function's timeout.
    pub function_timeout_seconds: Option<u32>,
    /// The function's memory.
    pub function_memory_mb: Option<u32>,
    /// The function's instruction set: `x86_64` (default) or `arm64` (Graviton).
    pub architecture: Option<String>,
    /// Extra environment variables for the function.
    pub environment: Option<BTreeMap<String, String>>,
    /// How long to wait for each NAT gateway to become available.
    pub nat_wait_seconds: Option<u64>,
    /// How long the function's log group keeps its logs (a CloudWatch Logs retention value).
    pub log_retention_days: Option<u32>,
    /// Where the alarm topic mails (an email subscription, pending until confirmed).
    pub alarm_email: Option<String>,
    /// The alarms' names and thresholds (see [`crate::alarms::RawAlarms`]).
    pub alarms: Option<crate::alarms::RawAlarms>,
    /// The self-check's schedule: `rate(...)`, `cron(...)` or `off`; default `rate(15 minutes)`.
    pub self_check_schedule: Option<String>,
    /// Several partners (see [`partners`]); without it the stack has the single partner of
    /// `secret` / `secret_file` / `partner_address`.
    pub partners: Option<Vec<RawPartner>>,
}

impl RawConfig {
    /// Reads a config file; relative paths in it are taken relative to its directory.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            what: "config file",
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, path)
    }

    /// Parses the text of the config file at `path` (relative paths are taken relative to its
    /// directory).
    pub fn from_text(text: &str, path: &Path) -> Result<Self> {
        let mut raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!("config file {}", path.display()), e.to_string())
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let partner_files = raw
            .partners
            .iter_mut()
            .flatten()
            .filter_map(|p| p.secret_file.as_mut());
        let files = [&mut raw.secret_file, &mut raw.zip].into_iter().flatten();
        for p in files.chain(partner_files) {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(raw)
    }

    /// `self` with every field set in `over` replaced (flags override the file).
    pub fn merge(self, over: RawConfig) -> Self {
        macro_rules! pick {
            ($($f:ident),*) => { RawConfig { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            stack,
            partner_address,
            bucket,
            availability_zones,
            secret,
            secret_file,
            zip,
            eip_allocation_ids,
            max_concurrency,
            batch_size,
            max_receive_count,
            function_timeout_seconds,
            function_memory_mb,
            architecture,
            environment,
            nat_wait_seconds,
            log_retention_days,
            alarm_email,
            alarms,
            self_check_schedule,
            partners
        )
    }
}

/// Where the partner's SFTP server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partner {
    /// A fixed IPv4 address.
    Ip(Ipv4Addr),
    /// A DNS name, resolved to IPv4 addresses when the security group is written.
    Host(String),
}

/// The validated configuration of one stack.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Lower-case letters, digits and `-`, at most 32 characters.
    pub stack: String,
    /// Two distinct AZ names, if the operator chose them (checked against the region later).
    pub azs: Option<[String; 2]>,
    /// The partner's address, if given.
    pub partner: Option<Partner>,
    /// The inbox bucket: as given, or (after [`Spec::for_account`]) the default name.
    pub bucket: String,
    /// Whether the operator named the bucket (else `destroy`/`outputs` look up what `apply` used).
    pub bucket_given: bool,
    /// The partner secret's name or ARN.
    pub secret: String,
    /// Whether the operator named the secret.
    pub secret_given: bool,
    /// The file to create the secret from.
    pub secret_file: Option<PathBuf>,
    /// The packaged function zip.
    pub zip: PathBuf,
    /// Elastic IPs the operator brings.
    pub eip_allocation_ids: Option<[String; 2]>,
    /// The event source mapping's maximum concurrency (2..=1000).
    pub max_concurrency: u32,
    /// The event source mapping's batch size (1..=10000).
    pub batch_size: u32,
    /// The redrive policy's maxReceiveCount (1..=1000).
    pub max_receive_count: u32,
    /// The function's timeout in seconds (1..=900).
    pub timeout_seconds: u32,
    /// The function's memory in MB (128..=10240).
    pub memory_mb: u32,
    /// The function's instruction set (the zip must be built for it).
    pub architecture: Arch,
    /// Extra environment variables for the function.
    pub environment: BTreeMap<String, String>,
    /// The bounded wait for each NAT gateway.
    pub nat_wait: Duration,
    /// The function's log group retention in days.
    pub log_retention_days: u32,
    /// The alarms, their topic's email and the self-check's schedule.
    pub alerting: crate::alarms::Alerting,
    /// The partners of a stack declared with `partners`; empty for the single-partner stack of
    /// `secret` (see [`partners`]).
    pub partners: Vec<PartnerConfig>,
}

/// The function's instruction set, as Lambda names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// Intel/AMD, Lambda's default.
    #[default]
    X86_64,
    /// Graviton: the same memory costs ~20% less per GB-second.
    Arm64,
}

impl Arch {
    /// Lambda's name: `x86_64` or `arm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Parses the `architecture` setting; the error names it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "x86_64" => Ok(Arch::X86_64),
            "arm64" => Ok(Arch::Arm64),
            _ => Err(Error::invalid(
                "architecture",
                format!("{s:?}: use x86_64 or arm64 (deploy/package --arch builds either)"),
            )),
        }
    }

    /// The zip `deploy/package --arch <self>` writes, next to the x86_64 one in `x86_zip`'s
    /// directory: `bootstrap.zip` for x86_64, `bootstrap-arm64.zip` for arm64.
    pub fn default_zip(self, x86_zip: PathBuf) -> PathBuf {
        match self {
            Arch::X86_64 => x86_zip,
            Arch::Arm64 => x86_zip.with_file_name("bootstrap-arm64.zip"),
        }
    }
}

/// The retention values CloudWatch Logs accepts.
const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Where `deploy/package` writes the zip: `$CARGO_TARGET_DIR/lambda/bootstrap/bootstrap.zip`, with
/// the target dir `tests/run` and `deploy/` share by default (for arm64 see [`Arch::default_zip`]).
pub fn default_zip() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/sftp-forward-target"))
        .join("lambda/bootstrap/bootstrap.zip")
}

/// The function's list of the stack's Elastic IPs (for its egress self-check), set by `apply`.
pub const EXPECTED_EGRESS_ENV: &str = sftp_forward_core::env::EXPECTED_EGRESS_IPS;

/// The environment variable the function reads the single partner's secret id from.
pub const SECRET_ENV: &str = sftp_forward_core::env::SECRET_ID;

impl Spec {
    /// Checks every field; the error names the field.
    pub fn from_raw(raw: RawConfig, default_zip: PathBuf) -> Result<Self> {
        let stack = raw.stack.unwrap_or_else(|| "sftp-forward".into());
        if stack.is_empty()
            || stack.len() > 32
            || !stack
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || stack.starts_with('-')
            || stack.ends_with('-')
        {
            return Err(Error::invalid(
                "stack",
                format!("{stack:?}: use 1-32 lower-case letters, digits and inner '-'"),
            ));
        }
        let azs = distinct_pair(
            "availability_zones",
            raw.availability_zones,
            "the two NAT gateways need two distinct AZs",
        )?;
        let eip_allocation_ids = distinct_pair(
            "eip_allocation_ids",
            raw.eip_allocation_ids,
            "each NAT gateway needs its own EIP",
        )?;
        if let Some(ids) = eip_allocation_ids
            .as_ref()
            .filter(|ids| !ids.iter().all(|id| id.starts_with("eipalloc-")))
        {
            return Err(Error::invalid(
                "eip_allocation_ids",
                format!("{ids:?}: allocation ids look like eipalloc-0123abcd"),
            ));
        }
        let partner = raw
            .partner_address
            .as_deref()
            .map(parse_partner)
            .transpose()?;
        let bucket_given = raw.bucket.is_some();
        let bucket = raw.bucket.unwrap_or_default();
        if bucket_given {
            check_bucket_name(&bucket)?;
        }
        let log_retention_days = raw.log_retention_days.unwrap_or(30);
        if !LOG_RETENTION_DAYS.contains(&log_retention_days) {
            return Err(Error::invalid(
                "log_retention_days",
                format!("{log_retention_days} is not one CloudWatch Logs accepts: one of {LOG_RETENTION_DAYS:?}"),
            ));
        }
        let environment = raw.environment.unwrap_or_default();
        // A single partner's route may come from `environment` (as before `partners`); with
        // `partners`, every partner variable is the provisioner's.
        let owned: &[&str] = if raw.partners.is_some() {
            &PARTNER_ENV
        } else {
            &PARTNER_ENV[..2]
        };
        if let Some(name) = owned.iter().find(|n| environment.contains_key(**n)) {
            return Err(Error::invalid(
                "environment",
                format!(
                    "{name} is set by the provisioner from \"partners\" (or \"secret\" for a \
                     single partner)"
                ),
            ));
        }
        let partners = match raw.partners {
            None => Vec::new(),
            Some(list) => {
                let single = [
                    ("secret", raw.secret.is_some()),
                    ("secret_file", raw.secret_file.is_some()),
                    ("partner_address", raw.partner_address.is_some()),
                ];
                if let Some((field, _)) = single.iter().find(|(_, set)| *set) {
                    return Err(Error::invalid(
                        *field,
                        "describes the single partner of a stack without \"partners\": with \
                         \"partners\", give each partner its own (secret, secret_file, address)",
                    ));
                }
                let partners = partners::validate(&stack, list, raw.max_concurrency)?;
                partners::check_fits(&partners, &environment)?;
                partners
            }
        };
        let architecture = raw
            .architecture
            .as_deref()
            .map_or(Ok(Arch::default()), Arch::parse)?;
        let alerting = crate::alarms::Alerting::from_raw(
            &stack,
            raw.alarm_email,
            raw.alarms,
            raw.self_check_schedule,
        )?;
        Ok(Spec {
            alerting,
            architecture,
            secret_given: raw.secret.is_some(),
            secret: raw
                .secret
                .unwrap_or_else(|| format!("sftp-forward/{stack}/partner")),
            bucket_given,
            log_retention_days,
            secret_file: raw.secret_file,
            zip: raw
                .zip
                .unwrap_or_else(|| architecture.default_zip(default_zip)),
            max_concurrency: in_range("max_concurrency", raw.max_concurrency, 2, 2, 1000)?,
            batch_size: in_range("batch_size", raw.batch_size, 10, 1, 10_000)?,
            max_receive_count: in_range("max_receive_count", raw.max_receive_count, 5, 1, 1000)?,
            timeout_seconds: in_range(
                "function_timeout_seconds",
                raw.function_timeout_seconds,
                300,
                1,
                900,
            )?,
            memory_mb: in_range(
                "function_memory_mb",
                raw.function_memory_mb,
                1024,
                128,
                10_240,
            )?,
            nat_wait: Duration::from_secs(raw.nat_wait_seconds.unwrap_or(600)),
            stack,
            azs,
            partner,
            bucket,
            eip_allocation_ids,
            environment,
            partners,
        })
    }

    /// Fills in the default bucket name, `<stack>-<account>-<region>`, unless the operator named
    /// one: bucket names are global, so a fixed default would clash with another account's.
    pub fn for_account(mut self, account: &str, region: &str) -> Result<Self> {
        if !self.bucket_given {
            self.bucket = format!("{}-{account}-{region}", self.stack);
            check_bucket_name(&self.bucket)?;
        }
        Ok(self)
    }

    /// The function (and its log group `/aws/lambda/<name>`).
    pub fn function_name(&self) -> String {
        format!("{}-forward", self.stack)
    }
    /// The function's log group.
    pub fn log_group(&self) -> String {
        format!("/aws/lambda/{}", self.function_name())
    }
    /// The function's execution role. IAM names are global to the account, so the region is part
    /// of it: the same stack name in two regions gets two roles.
    pub fn role_name(&self, region: &str) -> String {
        format!("{}-forward-{region}", self.stack)
    }
    /// The queue the bucket notifies.
    pub fn queue_name(&self) -> String {
        format!("{}-inbox", self.stack)
    }
    /// The dead-letter queue.
    pub fn dlq_name(&self) -> String {
        format!("{}-inbox-dlq", self.stack)
    }
    /// The function's security group.
    pub fn security_group_name(&self) -> String {
        format!("{}-function", self.stack)
    }
}

/// The function's variables that say who the partners are: set from `partners` or `secret` only.
const PARTNER_ENV: [&str; 5] = [
    sftp_forward_core::env::PARTNERS,
    sftp_forward_core::env::SECRET_ID,
    sftp_forward_core::env::REMOTE_PATH_TEMPLATE,
    sftp_forward_core::env::STRIP_PREFIX,
    sftp_forward_core::env::OVERWRITE,
];

/// Exactly two different values (one per AZ), if given.
fn distinct_pair(
    field: &str,
    values: Option<Vec<String>>,
    why: &str,
) -> Result<Option<[String; 2]>> {
    let Some(values) = values else {
        return Ok(None);
    };
    match <[String; 2]>::try_from(values) {
        Ok([a, b]) if a == b => Err(Error::invalid(
            field,
            format!("{a:?} is given twice: {why}"),
        )),
        Ok(pair) => Ok(Some(pair)),
        Err(v) => Err(Error::invalid(
            field,
            format!("give exactly two, got {}: {why}", v.len()),
        )),
    }
}

pub(crate) fn in_range(
    field: &str,
    value: Option<u32>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32> {
    let v = value.unwrap_or(default);
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(Error::invalid(
            field,
            format!("{v} is outside {min}..={max}"),
        ))
    }
}

/// An IPv4 address or a DNS hostname (RFC 1123 labels).
pub fn parse_partner(s: &str) -> Result<Partner> {
    let invalid = |why: &str| Error::invalid("partner_address", format!("{s:?} {why}"));
    if let Ok(ip) = s.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => Ok(Partner::Ip(v4)),
            IpAddr::V6(_) => Err(invalid(
                "is IPv6; the VPC egresses over IPv4 only: give an IPv4 address",
            )),
        };
    }
    let labels: Vec<&str> = s.strip_suffix('.').unwrap_or(s).split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let numeric_tld = labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if s.len() > 253 || !labels.iter().all(label_ok) || numeric_tld {
        return Err(invalid("is neither an IPv4 address nor a hostname"));
    }
    Ok(Partner::Host(s.to_ascii_lowercase()))
}

/// S3's rules for general purpose bucket names (the common subset).
fn check_bucket_name(b: &str) -> Result<()> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..")
        && b.parse::<Ipv4Addr>().is_err();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "bucket",
            format!("{b:?}: use 3-63 lower-case letters, digits, '-' and '.'"),
        ))
    }
}

#[cfg(test)]
mod tests;
