//! The egress IP: what an IP-echo service (`SFTP_FORWARD_EGRESS_ECHO_URL`) sees this process's
//! traffic leave from, and the local address the connection to it had (for the check's
//! placement, see [`crate::placement`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connect, HttpInfo};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `SFTP_FORWARD_EGRESS_ECHO_URL`'s default: AWS's own IP-echo service.
pub const DEFAULT_ECHO_URL: &str = "https://checkip.amazonaws.com/";

/// The most of an echo service's answer that is read (an IP address is at most 45 characters).
const MAX_ECHO_BODY: usize = 1024;
/// How much of an answer that is not an IP address an error quotes.
const QUOTE_CHARS: usize = 100;

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

/// What the echo service saw, and where the connection to it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The public IP the echo service saw.
    pub ip: IpAddr,
    /// The local address of the connection to it (in a VPC subnet where the process sees its
    /// network interface's address; inside Lambda, the sandbox's own link-local address).
    pub local: Option<IpAddr>,
}

/// The public IP this process's traffic leaves from, as the echo service at `url` sees it: one
/// HTTP GET, bounded by `timeout` as a whole; the body (whitespace trimmed) must be an IP address.
pub async fn egress_ip(url: &EchoUrl, timeout: Duration) -> Result<Seen, EchoError> {
    let name = url.to_string();
    let got = tokio::time::timeout(timeout, get(url)).await;
    let (body, local) = got.map_err(|_| EchoError::Timeout {
        url: name.clone(),
        after: timeout,
    })??;
    Ok(Seen {
        ip: parse_echo(&name, &body)?,
        local,
    })
}

/// GET `url`; the status must be a success. Plain HTTP never loads certificates.
async fn get(url: &EchoUrl) -> Result<(Bytes, Option<IpAddr>), EchoError> {
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

/// The body and the local address of the connection (hyper-util's [`HttpInfo`]).
async fn fetch<C>(
    client: Client<C, Empty<Bytes>>,
    url: &EchoUrl,
) -> Result<(Bytes, Option<IpAddr>), EchoError>
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
    let local = response
        .extensions()
        .get::<HttpInfo>()
        .map(|i| i.local_addr().ip());
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
    Ok((body.to_bytes(), local))
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
