//! An S3 bed for the benchmarks whose ranged GETs cost what S3's do: an HTTP proxy on 127.0.0.1 in
//! front of moto that answers `GetObject` (full or `Range:`, with `If-Match`) from a copy of the
//! object on local disk and passes every other call to moto.
//!
//! moto answers every GET, ranged or not, by copying the whole object out of its store, so a
//! reader that fetches an object as K ranges (the Lambda's striped path) costs moto K full copies;
//! S3 charges no such thing. Here each GET first asks moto for the object's metadata (`HeadObject`,
//! cheap in moto: so the ETag, version and `If-Match` are always moto's current ones), copies the
//! object to disk on the first GET of that ETag and version (one full GET from moto), then serves
//! the requested bytes from the copy, streamed, with the headers the SDK reads: `Content-Length`,
//! `Content-Range` (206), `ETag`, `Last-Modified`, `x-amz-version-id` when versioned, the object's
//! metadata; `412 PreconditionFailed` for a stale `If-Match`, `416 InvalidRange` past the end.
//! Full-object checksums (`x-amz-checksum-*`) are left off ranged answers, as S3 does.
//!
//! Only path-style requests (`/bucket/key`, what the SDK sends to a custom endpoint with
//! `force_path_style`) are served from disk; a GET with any query other than `versionId` and the
//! SDK's `x-id=GetObject`, or with other conditional headers, goes to moto unchanged. The copies
//! live in a directory of the caller's and are not removed (the benchmarks keep their objects).
//! The mirror fetch holds the whole object in memory once (moto holds it anyway); serving streams.
//! Threads: one per client connection (HTTP/1.1 keep-alive), ending with the process, like
//! [`crate::strict_aws`], whose HTTP plumbing this reuses.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use crate::strict_aws::http::{self, Request, Response};

/// A running S3 bed (see the module doc).
pub struct S3Bed {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    /// Its port.
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    /// moto's `host:port`.
    upstream: String,
    dir: PathBuf,
    /// `bucket/key\0etag\0version` → its copy on disk; held while a copy is made, so two
    /// stripes asking at once make one copy.
    mirrors: Mutex<HashMap<String, PathBuf>>,
    /// GETs answered from a copy, per bucket.
    served: Mutex<HashMap<String, u64>>,
}

/// The S3 bed of this process, in front of [`crate::moto()`], keeping its copies under
/// `$TMPDIR/sftp-forward-s3-bed-<pid>/`. Panics with the reason if it cannot start.
pub fn s3_bed() -> &'static S3Bed {
    static BED: OnceLock<S3Bed> = OnceLock::new();
    BED.get_or_init(|| {
        let upstream = &crate::moto().endpoint;
        let dir = std::env::temp_dir().join(format!("sftp-forward-s3-bed-{}", std::process::id()));
        S3Bed::start(upstream, &dir).unwrap_or_else(|e| {
            panic!("testkit: cannot start the S3 bed in front of {upstream}: {e}")
        })
    })
}

impl S3Bed {
    /// Starts a bed on 127.0.0.1 (a port of its own) in front of `upstream_endpoint`
    /// (`http://HOST:PORT`), keeping object copies in `dir` (created).
    pub fn start(upstream_endpoint: &str, dir: &Path) -> io::Result<S3Bed> {
        std::fs::create_dir_all(dir)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: upstream_endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            dir: dir.to_owned(),
            mirrors: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
        });
        let for_thread = shared.clone();
        thread::Builder::new()
            .name("s3-bed-accept".into())
            .spawn(move || {
                http::serve_forever(listener, "s3-bed", move |req, w, close| {
                    answer(&for_thread, req, w, close)
                })
            })?;
        Ok(S3Bed {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            shared,
        })
    }

    /// The standard AWS SDK config pointed at this bed, like [`crate::Moto::sdk_config`].
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        crate::moto::sdk_config_for(&self.endpoint, "testkit-s3-bed").await
    }

    /// Environment for a subprocess that should use this bed as its AWS endpoint, like
    /// [`crate::Moto::env`] (every other service still reaches moto through it).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        crate::moto::env_for(&self.endpoint)
    }

    /// How many GETs of objects in `bucket` were answered from a local copy so far (not passed
    /// to moto).
    pub fn served_locally(&self, bucket: &str) -> u64 {
        let served = self.shared.served.lock().unwrap_or_else(|p| p.into_inner());
        served.get(bucket).copied().unwrap_or(0)
    }
}

/// The answer to one request: from the local copy for a `GetObject`, else moto's.
fn answer(shared: &Shared, req: &Request, w: &mut TcpStream, close: bool) -> io::Result<()> {
    match object_get(req) {
        Some(object) => shared.get_object(req, &object, w, close),
        None => shared.pass(req, w, close),
    }
}

/// A path-style `GetObject` the bed serves: bucket, key and the query to pass to moto's
/// `HeadObject` (just `versionId`, if any).
struct ObjectGet {
    bucket: String,
    key: String,
    query: String,
}

/// Conditional headers the bed does not evaluate itself (the request goes to moto).
const OTHER_CONDITIONS: &[&str] = &["if-none-match", "if-modified-since", "if-unmodified-since"];

fn object_get(req: &Request) -> Option<ObjectGet> {
    if req.method != "GET" || OTHER_CONDITIONS.iter().any(|h| req.header(h).is_some()) {
        return None;
    }
    let (bucket, key) = req.path().strip_prefix('/')?.split_once('/')?;
    if bucket.is_empty() || key.is_empty() {
        return None;
    }
    let mut query = String::new();
    for pair in req.query().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("x-id", "GetObject")) => {}
            Some(("versionId", _)) => query = pair.to_owned(),
            _ => return None,
        }
    }
    Some(ObjectGet {
        bucket: http::percent_decode(bucket, false),
        key: http::percent_decode(key, false),
        query,
    })
}

/// Headers of the client's GET that are not passed to moto's HEAD and full GET.
fn not_passed(name: &str) -> bool {
    ["range", "if-match", "x-amz-checksum-mode"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

impl Shared {
    fn get_object(
        &self,
        req: &Request,
        object: &ObjectGet,
        w: &mut TcpStream,
        close: bool,
    ) -> io::Result<()> {
        let upstream = |method: &str| Request {
            method: method.into(),
            target: match object.query.as_str() {
                "" => req.path().to_owned(),
                query => format!("{}?{query}", req.path()),
            },
            version: "HTTP/1.1".into(),
            headers: req
                .headers
                .iter()
                .filter(|(n, _)| !not_passed(n))
                .cloned()
                .collect(),
            body: Vec::new(),
        };
        let head = match http::forward(&self.upstream, &upstream("HEAD")) {
            Ok(head) if head.status == 200 => head,
            // Missing object, bucket or version: moto's own answer (with its error body).
            Ok(_) => return self.pass(req, w, close),
            Err(e) => {
                return http::write_response(w, &http::bad_gateway(&e.to_string()), false, close)
            }
        };
        let etag = head.header("etag").unwrap_or("").to_owned();
        let len: u64 = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Some(wanted) = req.header("if-match") {
            if !etag_matches(wanted, &etag) {
                let resp = http::s3_error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    &object.bucket,
                    false,
                );
                return http::write_response(w, &resp, false, close);
            }
        }
        let range = match req.header("range").map(|r| parse_range(r, len)) {
            None => None,
            Some(Some(r)) => Some(r),
            Some(None) => {
                let resp = http::s3_error(
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                    &object.bucket,
                    false,
                );
                return http::write_response(w, &resp, false, close);
            }
        };
        let version = head.header("x-amz-version-id").unwrap_or("null");
        let path = match self.mirror(&upstream("GET"), object, &etag, version, len) {
            Ok(path) => path,
            Err(e) => {
                return http::write_response(w, &http::bad_gateway(&e.to_string()), false, close)
            }
        };
        *self
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(object.bucket.clone())
            .or_default() += 1;
        write_object(w, &head, &path, range, len, close)
    }

    /// The client's request as it is, answered by moto.
    fn pass(&self, req: &Request, w: &mut TcpStream, close: bool) -> io::Result<()> {
        let resp = http::forward(&self.upstream, req)
            .unwrap_or_else(|e| http::bad_gateway(&e.to_string()));
        http::write_response(w, &resp, req.method == "HEAD", close)
    }

    /// The local copy of the object at `etag`/`version`, fetched from moto with `get` if there is
    /// none yet.
    fn mirror(
        &self,
        get: &Request,
        object: &ObjectGet,
        etag: &str,
        version: &str,
        len: u64,
    ) -> io::Result<PathBuf> {
        let id = format!("{}/{}\0{etag}\0{version}", object.bucket, object.key);
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = mirrors.get(&id) {
            return Ok(path.clone());
        }
        let resp = http::forward(&self.upstream, get)?;
        if resp.status != 200 || resp.header("etag") != Some(etag) || resp.body.len() as u64 != len
        {
            return Err(io::Error::other(format!(
                "moto's GET of {}/{} answered {} with ETag {:?} and {} bytes, not {etag} and {len}",
                object.bucket,
                object.key,
                resp.status,
                resp.header("etag"),
                resp.body.len()
            )));
        }
        let path = self.dir.join(format!("{}.obj", mirrors.len()));
        std::fs::write(&path, &resp.body)?;
        mirrors.insert(id, path.clone());
        Ok(path)
    }
}

/// `If-Match` (one ETag, a list, or `*`) against the current ETag, quotes optional.
fn etag_matches(wanted: &str, etag: &str) -> bool {
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    wanted
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` as the inclusive `(first, last)` of an object of `len`
/// bytes; `None` when not satisfiable (or not one byte range).
fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (first, last) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (first <= last && last < len).then_some((first, last))
}

/// Headers of moto's `HeadObject` answer not copied to a GET's answer (set here instead).
fn not_copied(name: &str, ranged: bool) -> bool {
    http::hop_by_hop(name)
        || name.eq_ignore_ascii_case("accept-ranges")
        || (ranged && name.to_ascii_lowercase().starts_with("x-amz-checksum-"))
}

/// Writes the answer to a GET of the object copied at `path`: 200 with all of it, or 206 with
/// `range`, streamed from the file.
fn write_object(
    w: &mut TcpStream,
    head: &Response,
    path: &Path,
    range: Option<(u64, u64)>,
    len: u64,
    close: bool,
) -> io::Result<()> {
    let (status, first, count) = match range {
        Some((first, last)) => ("206 Partial Content", first, last - first + 1),
        None => ("200 OK", 0, len),
    };
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in head
        .headers
        .iter()
        .filter(|(n, _)| !not_copied(n, range.is_some()))
    {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((first, last)) = range {
        out.push_str(&format!("Content-Range: bytes {first}-{last}/{len}\r\n"));
    }
    out.push_str(&format!(
        "Accept-Ranges: bytes\r\nContent-Length: {count}\r\n"
    ));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(first))?;
    w.write_all(out.as_bytes())?;
    let copied = io::copy(&mut file.take(count), w)?;
    if copied != count {
        return Err(io::Error::other(format!(
            "{} has {copied} bytes from {first}, not {count}",
            path.display()
        )));
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_s3_reads_them() {
        assert_eq!(parse_range("bytes=0-0", 10), Some((0, 0)));
        assert_eq!(parse_range("bytes=2-", 10), Some((2, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=3-2", 10), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }

    #[test]
    fn if_match_compares_etags_without_quotes() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("abc", "\"abc\""));
        assert!(etag_matches("\"x\", \"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
