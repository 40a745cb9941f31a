//! The egress self-check, shared by the function (`{"check": true}`) and the CLI (`check`,
//! `test-connection`): the partner's host key and whether it is pinned, the login (only to a
//! pinned key), a write probe in `RemoteDirectory`, and the public IP this network path uses as an
//! IP-echo service sees it, compared with the IPs the partner allowlists.
//!
//! Nothing here ever trusts a key: the scan aborts the handshake at the key check, and the login
//! goes through [`Session::open`], which checks the pins again.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use forward::hostkey::public_key_line;
use forward::{Fingerprint, Partner, Session, Tuning};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::secret::SecretError;

/// `SFTP_FORWARD_EGRESS_ECHO_URL`'s default: AWS's own IP-echo service.
pub const DEFAULT_ECHO_URL: &str = "https://checkip.amazonaws.com/";

/// The most of an echo service's answer that is read (an IP address is at most 45 characters).
const MAX_ECHO_BODY: usize = 1024;
/// How much of an answer that is not an IP address an error quotes.
const QUOTE_CHARS: usize = 100;

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

// ---------------------------------------------------------------------------------------------
// The egress IP.
// ---------------------------------------------------------------------------------------------

/// The URL of an IP-echo service (`SFTP_FORWARD_EGRESS_ECHO_URL`): an `http://` or `https://` URL
/// whose GET answers with the caller's public IP as plain text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoUrl(Uri);

/// Why a string is not a usable echo URL.
#[derive(Debug, thiserror::Error)]
pub enum EchoUrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL: {source}")]
    Invalid {
        url: String,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    /// A URL, but not `http://host...` or `https://host...`.
    #[error("{url:?} is not an http:// or https:// URL with a host")]
    NotHttp { url: String },
}

impl FromStr for EchoUrl {
    type Err = EchoUrlError;

    fn from_str(s: &str) -> Result<EchoUrl, EchoUrlError> {
        let uri: Uri = s.parse().map_err(|source| EchoUrlError::Invalid {
            url: s.to_owned(),
            source,
        })?;
        let http = matches!(uri.scheme_str(), Some("http" | "https"));
        if !http || uri.host().is_none_or(str::is_empty) {
            return Err(EchoUrlError::NotHttp { url: s.to_owned() });
        }
        Ok(EchoUrl(uri))
    }
}

impl Default for EchoUrl {
    fn default() -> EchoUrl {
        DEFAULT_ECHO_URL
            .parse()
            .expect("the default echo URL is valid")
    }
}

impl fmt::Display for EchoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why the egress IP could not be learnt. Each variant names the echo URL.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// No root certificates to check an `https://` echo service with.
    #[error(
        "cannot check the certificate of the IP echo service {url}: no root certificates: {source}"
    )]
    Tls {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The request failed (DNS, connect, TLS, connection reset).
    #[error("cannot reach the IP echo service {url}: {}", chain(source))]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No complete answer within the bound.
    #[error("the IP echo service {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// An HTTP status other than success.
    #[error("the IP echo service {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The answer could not be read (broken off, or longer than an IP address can be).
    #[error("cannot read the answer of the IP echo service {url}: {}", chain(source.as_ref()))]
    Body {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer is not an IP address.
    #[error("the IP echo service {url} answered {quote:?}, which is not an IP address")]
    NotAnIp { url: String, quote: String },
}

impl EchoError {
    /// Whether asking again later may work (network trouble, a busy service) rather than needing
    /// an operator to fix the URL.
    pub fn is_transient(&self) -> bool {
        match self {
            EchoError::Request { .. } | EchoError::Timeout { .. } | EchoError::Body { .. } => true,
            EchoError::Status { status, .. } => *status == 429 || *status >= 500,
            EchoError::Tls { .. } | EchoError::NotAnIp { .. } => false,
        }
    }
}

/// An error and its sources, `: `-separated (hyper's own messages are terse: "client error (Connect)").
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// The public IP this process's traffic leaves from, as the echo service at `url` sees it: one
/// HTTP GET, bounded by `timeout` as a whole; the body (whitespace trimmed) must be an IP address.
pub async fn egress_ip(url: &EchoUrl, timeout: Duration) -> Result<IpAddr, EchoError> {
    let name = url.to_string();
    let got = tokio::time::timeout(timeout, get(url)).await;
    let body = got.map_err(|_| EchoError::Timeout {
        url: name.clone(),
        after: timeout,
    })??;
    parse_echo(&name, &body)
}

/// GET `url`; the status must be a success. Plain HTTP never loads certificates.
async fn get(url: &EchoUrl) -> Result<Bytes, EchoError> {
    let executor = TokioExecutor::new();
    if url.0.scheme_str() == Some("https") {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|source| EchoError::Tls {
                url: url.to_string(),
                source,
            })?
            .https_only()
            .enable_http1()
            .build();
        fetch(Client::builder(executor).build(https), url).await
    } else {
        fetch(Client::builder(executor).build_http(), url).await
    }
}

async fn fetch<C>(client: Client<C, Empty<Bytes>>, url: &EchoUrl) -> Result<Bytes, EchoError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let name = || url.to_string();
    let request = hyper::Request::get(url.0.clone())
        .header(hyper::header::USER_AGENT, "sftp-forward-check")
        .body(Empty::new())
        .expect("a GET of a valid URI is a valid request");
    let response = client
        .request(request)
        .await
        .map_err(|source| EchoError::Request {
            url: name(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(EchoError::Status {
            url: name(),
            status: status.as_u16(),
        });
    }
    let body = Limited::new(response.into_body(), MAX_ECHO_BODY)
        .collect()
        .await
        .map_err(|source| EchoError::Body {
            url: name(),
            source,
        })?;
    Ok(body.to_bytes())
}

/// The echo service's answer as an IP address; otherwise an error quoting (some of) what it said.
fn parse_echo(url: &str, body: &[u8]) -> Result<IpAddr, EchoError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    text.parse().map_err(|_| {
        let mut quote: String = text.chars().take(QUOTE_CHARS).collect();
        if text.chars().count() > QUOTE_CHARS {
            quote.push('…');
        }
        EchoError::NotAnIp {
            url: url.to_owned(),
            quote,
        }
    })
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
    /// The IPs the partner allowlists.
    pub expected_egress_ips: Vec<IpAddr>,
    /// Whether `egress_ip` is one of them.
    pub egress_match: EgressMatch,
    /// Everything found wrong, egress first; empty when `ok`.
    pub problems: Vec<Problem>,
}

/// Run the whole check: the egress IP and the partner connection, concurrently.
pub async fn run(partner: &Partner, tuning: &Tuning, egress: &EgressProbe) -> Report {
    let (seen, connection) = tokio::join!(
        egress_ip(&egress.echo_url, egress.timeout),
        connection(partner, tuning)
    );
    let mut connection = connection.unwrap_or_else(|e| Connection::unreachable(partner, &e));
    let mut problems = Vec::new();
    let (egress_ip, egress_error, egress_match) = match seen {
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
        expected_egress_ips: egress.expected.clone(),
        egress_match,
        problems,
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
        format!(
            "egress self-check failed, {} problem(s): {problems} | egress IP seen: {seen} \
             (via {}); expected: {expected}; partner {} as {:?}; host key fingerprint: \
             {fingerprint} (trusted: {}); login: {}; writable: {}",
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_urls_must_be_http_or_https_with_a_host() {
        for good in [
            "https://checkip.amazonaws.com/",
            "http://127.0.0.1:8080/ip",
            "http://[::1]:80",
        ] {
            assert!(good.parse::<EchoUrl>().is_ok(), "{good}");
        }
        for bad in [
            "ftp://example.com/",
            "checkip.amazonaws.com",
            "/ip",
            "",
            "http://",
        ] {
            assert!(bad.parse::<EchoUrl>().is_err(), "{bad:?}");
        }
        assert_eq!(EchoUrl::default().to_string(), DEFAULT_ECHO_URL);
    }

    #[test]
    fn the_echo_answer_is_trimmed_and_must_be_an_ip() {
        assert_eq!(
            parse_echo("u", b" 203.0.113.7\n").unwrap(),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            parse_echo("u", b"2001:db8::1\r\n").unwrap(),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let html = format!("<html>{}</html>", "x".repeat(500));
        let err = parse_echo("http://echo.example/", html.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("http://echo.example/") && text.contains("not an IP address"),
            "{text}"
        );
        assert!(text.len() < 250, "the quote is bounded: {text}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transient_error_naming_the_url() {
        let closed = testkit::echo::closed_url();
        let port = closed.trim_end_matches('/').rsplit(':').next().unwrap();
        for scheme in ["http", "https"] {
            let url: EchoUrl = format!("{scheme}://127.0.0.1:{port}/").parse().unwrap();
            let err = egress_ip(&url, Duration::from_secs(5)).await.unwrap_err();
            assert!(err.is_transient(), "{err}");
            let text = err.to_string();
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
            assert!(text.to_lowercase().contains("refused"), "{text}");
        }
    }
}
