//! Where a self-check ran. One invocation lands in one subnet, and Lambda chooses which: so each
//! check says which AZ it covered, and its metric carries that AZ (an alarm per AZ, provisioned by
//! crates/provision `alarms`).
//!
//! The provisioner passes the stack's paths in `SFTP_FORWARD_CHECK_PATHS`: per AZ, the private
//! subnet's name and CIDR and its own NAT gateway's Elastic IP. Two honest signals, in order:
//!
//! 1. the local address of the check's connection to the echo service, if it lies in a subnet's
//!    CIDR (where the process sees its network interface's address, as on EC2 or the egress
//!    testbed). Inside Lambda it does not: the sandbox has a link-local address and Lambda's
//!    Hyperplane ENI translates it, so
//! 2. the egress IP the echo service saw, if it is one AZ's Elastic IP: the check left through
//!    that AZ's NAT gateway. After `failover` a subnet leaves through the other AZ's NAT gateway,
//!    and its checks count for that path — the one they exercised.
//!
//! Neither: the AZ is `unknown` (a check that could not reach the echo service, e.g. through a
//! broken NAT gateway, from Lambda), which has its own alarm.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::check::{ProblemKind, Report};
use crate::metrics::{self, Group, AZ_DIMENSION, FUNCTION_DIMENSION, UNKNOWN_AZ};

/// The environment variable the provisioner sets.
pub const PATHS_ENV: &str = crate::env::CHECK_PATHS;

/// One AZ's path, as the provisioner writes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Path {
    /// The AZ, e.g. `us-east-1a`.
    pub az: String,
    /// The private subnet's name, e.g. `private-one`.
    pub subnet: String,
    /// Its IPv4 CIDR, e.g. `10.0.0.32/28`.
    pub cidr: String,
    /// Its own NAT gateway's Elastic IP.
    pub egress_ip: Option<IpAddr>,
}

impl Path {
    fn contains(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else { return false };
        let Some((net, bits)) = self.cidr.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
            return false;
        };
        let mask = u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(net) & mask
    }
}

/// `SFTP_FORWARD_CHECK_PATHS`'s value: a JSON list of [`Path`]s.
pub fn parse_paths(text: &str) -> Result<Vec<Path>, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("{PATHS_ENV} is not a JSON list of {{az, subnet, cidr, egress_ip}}: {e}")
    })
}

/// How the AZ was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// The local address lies in the subnet's CIDR.
    LocalAddress,
    /// The egress IP is the AZ's Elastic IP.
    EgressIp,
    /// Neither.
    Unknown,
}

impl By {
    /// The word the report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            By::LocalAddress => "local_address",
            By::EgressIp => "egress_ip",
            By::Unknown => "unknown",
        }
    }
}

/// Where the check ran, in its report and its metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The AZ the check covered; `None`: unknown.
    pub availability_zone: Option<String>,
    /// The subnet the check ran in (known from the local address only).
    pub subnet: Option<String>,
    /// The subnet whose NAT gateway's Elastic IP the traffic left from.
    pub egress_path: Option<String>,
    /// How the AZ was told.
    pub by: By,
    /// Why the paths were not usable, if they were not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths_error: Option<String>,
}

/// Where a check with this local address and egress IP ran, given the stack's `paths`.
pub fn place(paths: &[Path], local: Option<IpAddr>, egress: Option<IpAddr>) -> Placement {
    let by_local = local.and_then(|ip| paths.iter().find(|p| p.contains(ip)));
    let by_egress = egress.and_then(|ip| paths.iter().find(|p| p.egress_ip == Some(ip)));
    let (az, by) = match (by_local, by_egress) {
        (Some(p), _) => (Some(p.az.clone()), By::LocalAddress),
        (None, Some(p)) => (Some(p.az.clone()), By::EgressIp),
        (None, None) => (None, By::Unknown),
    };
    Placement {
        availability_zone: az,
        subnet: by_local.map(|p| p.subnet.clone()),
        egress_path: by_egress.map(|p| p.subnet.clone()),
        by,
        paths_error: None,
    }
}

/// [`place`] with the paths from the environment (`SFTP_FORWARD_CHECK_PATHS`; none: unknown).
pub fn of_report(report: &Report) -> Placement {
    let paths = std::env::var(PATHS_ENV).ok().map(|t| parse_paths(&t));
    let (paths, error) = match paths {
        None => (Vec::new(), Some(format!("{PATHS_ENV} is not set"))),
        Some(Ok(p)) => (p, None),
        Some(Err(e)) => (Vec::new(), Some(e)),
    };
    Placement {
        paths_error: error,
        ..place(&paths, report.local_ip, report.egress_ip)
    }
}

/// The check's EMF line: `CheckFailed` (0 or 1) per function and per function and AZ, and
/// `HostKeyUntrusted` (0 or 1) per function, as the record metrics count it.
pub fn emf(report: &Report, placement: &Placement) -> Value {
    let untrusted = report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::UntrustedHostKey);
    line(
        !report.ok,
        untrusted,
        placement.availability_zone.as_deref(),
    )
}

/// The EMF line of a check that could not run (the secret unreadable or not a partner): failed,
/// in an unknown AZ, so that it counts as a failure and not as a missing check.
pub fn emf_not_run() -> Value {
    line(true, false, None)
}

fn line(failed: bool, untrusted: bool, az: Option<&str>) -> Value {
    metrics::line(
        &[
            Group {
                dimension_sets: &[&[FUNCTION_DIMENSION], &[FUNCTION_DIMENSION, AZ_DIMENSION]],
                metrics: &[("CheckFailed", "Count", u64::from(failed))],
            },
            Group {
                dimension_sets: &[&[FUNCTION_DIMENSION]],
                metrics: &[("HostKeyUntrusted", "Count", u64::from(untrusted))],
            },
        ],
        &[
            (FUNCTION_DIMENSION, metrics::function_name()),
            (AZ_DIMENSION, az.unwrap_or(UNKNOWN_AZ).to_owned()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<Path> {
        parse_paths(
            r#"[{"az": "us-east-1a", "subnet": "private-one", "cidr": "10.0.0.32/28", "egress_ip": "203.0.113.10"},
                {"az": "us-east-1b", "subnet": "private-two", "cidr": "10.0.0.64/28", "egress_ip": "203.0.113.11"}]"#,
        )
        .unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_local_address_names_the_subnet_and_the_egress_ip_the_path() {
        let p = place(&paths(), ip("10.0.0.70"), ip("203.0.113.11"));
        assert_eq!(p.availability_zone.as_deref(), Some("us-east-1b"));
        assert_eq!(
            (p.subnet.as_deref(), p.egress_path.as_deref(), p.by),
            (Some("private-two"), Some("private-two"), By::LocalAddress)
        );
        // Failed over: subnet one leaves through nat-two's address; the subnet still names the AZ.
        let p = place(&paths(), ip("10.0.0.33"), ip("203.0.113.11"));
        assert_eq!(p.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(p.egress_path.as_deref(), Some("private-two"));
    }

    #[test]
    fn inside_lambda_the_egress_ip_names_the_az() {
        // Lambda's sandbox address is link-local, in no subnet.
        let p = place(&paths(), ip("169.254.76.1"), ip("203.0.113.10"));
        assert_eq!(
            (p.availability_zone.as_deref(), p.subnet, p.by),
            (Some("us-east-1a"), None, By::EgressIp)
        );
        let p = place(&paths(), ip("169.254.76.1"), None);
        assert_eq!((p.availability_zone, p.by), (None, By::Unknown));
        // The boundaries of a /28.
        let p = place(&paths(), ip("10.0.0.47"), None);
        assert_eq!(p.subnet.as_deref(), Some("private-one"));
        let p = place(&paths(), ip("10.0.0.48"), None);
        assert_eq!(p.subnet, None);
    }

    #[test]
    fn a_bad_paths_value_names_the_variable() {
        let err = parse_paths("private-one=10.0.0.32/28").unwrap_err();
        assert!(err.contains(PATHS_ENV), "{err}");
    }
}
