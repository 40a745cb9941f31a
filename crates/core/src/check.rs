//! The egress self-check, shared by the function (`{"check": true}`) and the CLI (`check`,
//! `test-connection`): the partner's host key and whether it is pinned, the login (only to a
//! pinned key), a write probe in `RemoteDirectory`, and the public IP this network path uses as an
//! IP-echo service sees it, compared with the IPs the partner allowlists.
//!
//! Nothing here ever trusts a key: the scan aborts the handshake at the key check, and the login
//! goes through [`Session::open`], which checks the pins again.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use forward::hostkey::public_key_line;
use forward::{Fingerprint, Partner, Session, Tuning};
use serde::Serialize;

use crate::secret::SecretError;

mod echo;

pub use echo::{egress_ip, EchoError, EchoUrl, EchoUrlError, Seen, DEFAULT_ECHO_URL};

// ---------------------------------------------------------------------------------------------
// The partner connection: host key → trusted? → login → write probe.
// ---------------------------------------------------------------------------------------------

/// How far the login got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Login {
    /// Logged in with the publisher's own pinned connection.
    Ok,
    /// Tried and refused or broken (see the problem).
    Failed,
    /// Not tried: the host key is not trusted, or the server could not be reached.
    Skipped,
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Login::Ok => "ok",
            Login::Failed => "failed",
            Login::Skipped => "skipped",
        })
    }
}

/// What the partner's server showed and allowed. Serialises to the fields `test-connection --json`
/// prints; no field ever holds a secret (the host key is the server's public key).
#[derive(Debug, Serialize)]
pub struct Connection {
    /// `host:port`.
    pub partner: String,
    /// The login name.
    pub username: String,
    /// `RemoteDirectory`.
    pub remote_directory: String,
    /// The server's public key line (`ssh-ed25519 AAAA...`); `None` if it could not be read.
    pub host_key: Option<String>,
    /// The same as a `known_hosts` line (`host key` or `[host]:port key`).
    pub known_hosts: Option<String>,
    /// The key's algorithm, e.g. `ssh-ed25519`.
    pub algorithm: Option<String>,
    /// The key's `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
    pub fingerprint: Option<String>,
    /// Whether the key is in `TrustedHostKeys`.
    pub trusted: bool,
    /// How far the login got.
    pub login: Login,
    /// The algorithms the login's connection negotiated; `None` when it did not get that far.
    pub negotiated: Option<forward::Negotiated>,
    /// Whether a probe file could be created in `RemoteDirectory`; `None` when not checked.
    pub writable: Option<bool>,
    /// What is wrong, if anything (at most one: each step runs only if the one before passed).
    #[serde(skip)]
    pub problem: Option<Problem>,
}

impl Connection {
    /// `ssh-ed25519 SHA256:...`, when the key was read.
    pub fn fingerprint_line(&self) -> Option<String> {
        Some(format!(
            "{} {}",
            self.algorithm.as_deref()?,
            self.fingerprint.as_deref()?
        ))
    }

    /// The report of a server whose host key could not be read (nothing else was tried).
    fn unreachable(partner: &Partner, err: &forward::Error) -> Connection {
        Connection {
            problem: Some(Problem {
                kind: ProblemKind::PartnerUnreachable,
                transient: err.is_transient(),
                message: format!("reading the host key of {}: {err}", partner.addr()),
            }),
            ..Connection::of(partner)
        }
    }

    fn of(partner: &Partner) -> Connection {
        Connection {
            partner: partner.addr(),
            username: partner.username.clone(),
            remote_directory: partner.remote_directory.clone(),
            host_key: None,
            known_hosts: None,
            algorithm: None,
            fingerprint: None,
            trusted: false,
            login: Login::Skipped,
            negotiated: None,
            writable: None,
            problem: None,
        }
    }
}

/// Read the partner's host key (never trusting it), then, only if it is in `TrustedHostKeys`, log
/// in and create and remove an empty hidden probe file in `RemoteDirectory`.
///
/// `Err` only when the host key could not be read at all (nothing else was tried); every later
/// failure is in [`Connection::problem`].
pub async fn connection(partner: &Partner, tuning: &Tuning) -> Result<Connection, forward::Error> {
    // Offering the host-key algorithms of the pinned keys, as the publisher does: a server with
    // several host keys shows the pinned type, not its preferred one.
    let key = forward::scan_host_key(
        &partner.host,
        partner.port,
        &partner.algorithms,
        Some(&partner.trusted_host_keys),
        tuning,
    )
    .await?;
    let fingerprint = Fingerprint::of(&key);
    let line = public_key_line(&key);
    let mut report = Connection {
        known_hosts: Some(known_hosts_line(&partner.host, partner.port, &line)),
        host_key: Some(line),
        trusted: partner.trusted_host_keys.trusts(&key),
        algorithm: Some(fingerprint.algorithm.clone()),
        fingerprint: Some(fingerprint.sha256.clone()),
        ..Connection::of(partner)
    };
    if !report.trusted {
        report.problem = Some(Problem {
            kind: ProblemKind::UntrustedHostKey,
            transient: false,
            message: format!(
                "the host key is not in TrustedHostKeys; confirm {fingerprint} with the partner, \
                 then add the key line (`test-connection --print-host-key`) to the secret"
            ),
        });
        return Ok(report);
    }
    // The publisher's own check of the pins runs again inside `Session::open`.
    let mut session = match Session::open(partner, tuning).await {
        Ok(s) => s,
        Err(e) => {
            report.login = Login::Failed;
            report.problem = Some(Problem::of_login(&e));
            return Ok(report);
        }
    };
    report.login = Login::Ok;
    report.negotiated = Some(session.negotiated().clone());
    let probe = session.check_writable().await;
    session.close().await;
    report.writable = Some(probe.is_ok());
    if let Err(e) = probe {
        report.problem = Some(Problem {
            kind: ProblemKind::NotWritable,
            transient: e.is_transient(),
            message: e.to_string(),
        });
    }
    Ok(report)
}

/// `host ssh-ed25519 AAAA...`, with `[host]:port` for a port other than 22, as in `known_hosts`.
pub fn known_hosts_line(host: &str, port: u16, key_line: &str) -> String {
    if port == 22 {
        format!("{host} {key_line}")
    } else {
        format!("[{host}]:{port} {key_line}")
    }
}

// ---------------------------------------------------------------------------------------------
// Problems.
// ---------------------------------------------------------------------------------------------

/// One thing the check found wrong.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// Which step failed.
    pub kind: ProblemKind,
    /// Whether trying again later may succeed (network trouble) rather than needing an operator.
    pub transient: bool,
    /// What is wrong and what to do, for a person.
    pub message: String,
}

/// Which step of the check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The IP-echo service could not be asked, or did not answer with an IP address.
    EgressUnknown,
    /// The egress IP is not one of the expected ones: the partner's allowlist will refuse it.
    EgressMismatch,
    /// The partner's SSH server could not be reached (no host key read).
    PartnerUnreachable,
    /// The server's host key is not in `TrustedHostKeys` (the login was not tried).
    UntrustedHostKey,
    /// The partner rejected the credentials.
    LoginRejected,
    /// The login failed otherwise (network, SSH, a key that changed since the scan).
    LoginFailed,
    /// Logged in, but no file can be created in `RemoteDirectory`.
    NotWritable,
}

impl Problem {
    fn of_login(e: &forward::Error) -> Problem {
        let kind = match e {
            forward::Error::AuthRejected { .. } | forward::Error::AuthPrompt { .. } => {
                ProblemKind::LoginRejected
            }
            forward::Error::UntrustedHostKey { .. } => ProblemKind::UntrustedHostKey,
            _ => ProblemKind::LoginFailed,
        };
        Problem {
            kind,
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

/// What the egress part of the check compares with.
#[derive(Clone, Debug)]
pub struct EgressProbe {
    /// The IP-echo service.
    pub echo_url: EchoUrl,
    /// The IPs the partner allowlists (`SFTP_FORWARD_EXPECTED_EGRESS_IPS`); empty: not compared.
    pub expected: Vec<IpAddr>,
    /// Bound on the whole GET.
    pub timeout: Duration,
}

/// Whether the egress IP is one the partner allowlists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressMatch {
    /// It is one of the expected IPs.
    Matches,
    /// It is not: the partner's allowlist will refuse this path.
    Mismatch,
    /// No expected IPs are configured: reported, not compared.
    NotCompared,
    /// The egress IP could not be learnt.
    Unknown,
}

// ---------------------------------------------------------------------------------------------
// The whole check.
// ---------------------------------------------------------------------------------------------

/// The check's result: what the function returns (or logs, with a failed invocation) and what
/// `sftp-forward check --json` prints. Holds no secret.
#[derive(Debug, Serialize)]
pub struct Report {
    /// No problems.
    pub ok: bool,
    /// The partner part: host key, trust, login, writability.
    #[serde(flatten)]
    pub connection: Connection,
    /// The IP-echo service asked.
    pub echo_url: String,
    /// The public IP it saw; `None` if it could not be asked (see `egress_error`).
    pub egress_ip: Option<IpAddr>,
    /// Why the egress IP is unknown.
    pub egress_error: Option<String>,
    /// The local address of the connection to the echo service (see [`Seen::local`]).
    pub local_ip: Option<IpAddr>,
    /// The IPs the partner allowlists.
    pub expected_egress_ips: Vec<IpAddr>,
    /// Whether `egress_ip` is one of them.
    pub egress_match: EgressMatch,
    /// Everything found wrong, egress first; empty when `ok`.
    pub problems: Vec<Problem>,
    /// Which AZ and subnet the check ran in, when the function was told its paths
    /// ([`crate::placement`]); the CLI's check has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::placement::Placement>,
}

/// Run the whole check: the egress IP and the partner connection, concurrently.
pub async fn run(partner: &Partner, tuning: &Tuning, egress: &EgressProbe) -> Report {
    let (seen, connection) = tokio::join!(
        egress_ip(&egress.echo_url, egress.timeout),
        connection(partner, tuning)
    );
    let mut connection = connection.unwrap_or_else(|e| Connection::unreachable(partner, &e));
    let mut problems = Vec::new();
    let local_ip = seen.as_ref().ok().and_then(|s| s.local);
    let (egress_ip, egress_error, egress_match) = match seen.map(|s| s.ip) {
        Err(e) => {
            problems.push(Problem {
                kind: ProblemKind::EgressUnknown,
                transient: e.is_transient(),
                message: format!("the egress IP is unknown: {e}"),
            });
            (None, Some(e.to_string()), EgressMatch::Unknown)
        }
        Ok(ip) if egress.expected.is_empty() => (Some(ip), None, EgressMatch::NotCompared),
        Ok(ip) if egress.expected.contains(&ip) => (Some(ip), None, EgressMatch::Matches),
        Ok(ip) => {
            problems.push(Problem {
                kind: ProblemKind::EgressMismatch,
                transient: false,
                message: format!(
                    "the egress IP {ip} (as seen by {}) is not one of the expected IPs {} \
                     (SFTP_FORWARD_EXPECTED_EGRESS_IPS): the partner's allowlist will refuse \
                     this path; check the subnet's route to its NAT gateway",
                    egress.echo_url,
                    list(&egress.expected)
                ),
            });
            (Some(ip), None, EgressMatch::Mismatch)
        }
    };
    problems.extend(connection.problem.take());
    Report {
        ok: problems.is_empty(),
        connection,
        echo_url: egress.echo_url.to_string(),
        egress_ip,
        egress_error,
        local_ip,
        expected_egress_ips: egress.expected.clone(),
        egress_match,
        problems,
        placement: None,
    }
}

/// `a, b` (or `none`).
fn list(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "none".into();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// One paragraph for a failed invocation's `errorMessage`: each problem, then the egress IP
    /// seen, the expected ones and the host key fingerprint, so the Lambda console says it all.
    pub fn failure_message(&self) -> String {
        let problems = self
            .problems
            .iter()
            .enumerate()
            .map(|(i, p)| format!("({}) {}", i + 1, p.message))
            .collect::<Vec<_>>()
            .join(" ");
        let seen = self
            .egress_ip
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let expected = match self.egress_match {
            EgressMatch::NotCompared => "none set (not compared)".to_owned(),
            _ => list(&self.expected_egress_ips),
        };
        let c = &self.connection;
        let fingerprint = c
            .fingerprint_line()
            .unwrap_or_else(|| "not read".to_owned());
        // Where it ran (the function's check only): the per-AZ alarm that fired says the same.
        let ran_in = match &self.placement {
            Some(p) => format!(
                "; ran in AZ {} (by {})",
                p.availability_zone.as_deref().unwrap_or("unknown"),
                p.by.as_str()
            ),
            None => String::new(),
        };
        format!(
            "egress self-check failed, {} problem(s): {problems} | egress IP seen: {seen} \
             (via {}); expected: {expected}; partner {} as {:?}; host key fingerprint: \
             {fingerprint} (trusted: {}); login: {}; writable: {}{ran_in}",
            self.problems.len(),
            self.echo_url,
            c.partner,
            c.username,
            c.trusted,
            c.login,
            c.writable
                .map_or("not checked", |w| if w { "yes" } else { "no" }),
        )
    }
}

/// The check could not run, or found problems: the function's invocation fails with this.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailed {
    /// The check ran and found problems.
    #[error("{}", .0.failure_message())]
    Problems(Box<Report>),
    /// The partner secret could not be read: nothing was checked.
    #[error("egress self-check not run: {0}")]
    Secret(#[from] SecretError),
    /// The partner secret is not a valid partner connection: nothing was checked.
    #[error("egress self-check not run: secret {secret_id}: {source}")]
    Partner {
        secret_id: String,
        #[source]
        source: forward::ConfigError,
    },
    /// The checks of a stack with several partners: at least one failed (each named, with why).
    #[error("egress self-check failed for {0}")]
    Partners(String),
}
