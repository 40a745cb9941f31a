//! Just enough HTTP/1.1 for the proxy: read a request (Content-Length or chunked body,
//! `Expect: 100-continue`), forward it to moto on a fresh connection, read the whole answer, write
//! an answer back; plus form and percent decoding and the error bodies of each AWS protocol.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Longest request line or header line accepted.
const MAX_LINE: usize = 64 * 1024;

/// One HTTP request, body complete (de-chunked).
pub(crate) struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The target before `?`.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The target after `?` (empty without one).
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The client wants the connection closed after this answer.
    pub fn wants_close(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        conn.contains("close") || (self.version == "HTTP/1.0" && !conn.contains("keep-alive"))
    }
}

/// One HTTP response, body complete.
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A response of our own making.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            reason: reason(status).into(),
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("x-amzn-RequestId".into(), request_id()),
            ],
            body: body.into(),
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        502 => "Bad Gateway",
        _ => "Unknown",
    }
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// One line without its CRLF; `None` at end of stream before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(bad("line too long or cut off"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad("line is not UTF-8"))
}

/// Header names and values, in order.
type Headers = Vec<(String, String)>;

/// The start line and the headers; `None` if the stream ends before the start line.
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Headers)>> {
    let start = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // tolerated between requests
            Some(l) => break l,
        }
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("stream ended inside the headers"))?;
        if line.is_empty() {
            return Ok(Some((start, headers)));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line without a colon: {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// A chunked body, de-chunked; trailers are read and dropped.
fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("stream ended inside a chunked body"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            while read_line(r)?.is_some_and(|l| !l.is_empty()) {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if read_line(r)?.is_none_or(|l| !l.is_empty()) {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

pub(crate) fn content_length(headers: &[(String, String)]) -> io::Result<Option<usize>> {
    header(headers, "content-length")
        .map(|v| {
            v.parse()
                .map_err(|_| bad(format!("bad Content-Length {v:?}")))
        })
        .transpose()
}

pub(crate) fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

/// Reads the next request of a client connection; `None` when the client closed it between
/// requests. Answers `100 Continue` on `client` when asked to before reading the body.
pub(crate) fn read_request(
    r: &mut BufReader<TcpStream>,
    client: &mut TcpStream,
) -> io::Result<Option<Request>> {
    let Some((start, headers)) = read_head(r)? else {
        return Ok(None);
    };
    let mut parts = start.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("bad request line {start:?}")));
    };
    let expects_continue =
        header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        client.flush()?;
    }
    let body = if is_chunked(&headers) {
        read_chunked(r)?
    } else {
        let mut body = vec![0; content_length(&headers)?.unwrap_or(0)];
        r.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        body,
    }))
}

/// Accepts connections on `listener` for good (call it on a thread of its own), one thread
/// (`{name}-conn`) per connection serving its requests in a keep-alive loop until the client
/// closes it; `answer` writes the answer to each request (`close`: the client asked to close the
/// connection after it). Errors go to stderr prefixed `name`.
pub(crate) fn serve_forever<F>(listener: TcpListener, name: &'static str, answer: F)
where
    F: Fn(&Request, &mut TcpStream, bool) -> io::Result<()> + Send + Sync + 'static,
{
    let answer = std::sync::Arc::new(answer);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let answer = answer.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{name}-conn"))
                    .spawn(move || serve_connection(stream, name, &*answer));
                if let Err(e) = spawned {
                    eprintln!("{name}: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("{name}: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// One client connection: requests in a keep-alive loop until the client closes it.
fn serve_connection(
    stream: TcpStream,
    name: &str,
    answer: &dyn Fn(&Request, &mut TcpStream, bool) -> io::Result<()>,
) {
    let _ = stream.set_nodelay(true);
    let mut reader = match stream.try_clone() {
        Ok(s) => BufReader::new(s),
        Err(e) => return eprintln!("{name}: clone a client socket: {e}"),
    };
    let mut writer = stream;
    loop {
        let req = match read_request(&mut reader, &mut writer) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => return eprintln!("{name}: reading a request: {e}; dropping the connection"),
        };
        let close = req.wants_close();
        if let Err(e) = answer(&req, &mut writer, close) {
            return eprintln!("{name}: answering {} {}: {e}", req.method, req.target);
        }
        if close {
            return;
        }
    }
}

/// Headers the proxy sets itself instead of passing them on.
pub(crate) fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "expect",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Sends `req` to `upstream` (`host:port`) on a fresh connection (`Connection: close`) and reads
/// the whole answer.
pub(crate) fn forward(upstream: &str, req: &Request) -> io::Result<Response> {
    let stream = TcpStream::connect(upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for (name, value) in req.headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_body = !req.body.is_empty() || !matches!(req.method.as_str(), "GET" | "HEAD");
    if has_body {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut w = &stream;
    w.write_all(head.as_bytes())?;
    w.write_all(&req.body)?;
    w.flush()?;
    let mut r = BufReader::new(&stream);
    loop {
        let (start, headers) =
            read_head(&mut r)?.ok_or_else(|| bad("upstream closed without answering"))?;
        let mut parts = start.splitn(3, ' ');
        let status: u16 = parts
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {start:?}")))?;
        let reason = parts.next().unwrap_or("").to_owned();
        if (100..200).contains(&status) {
            continue; // an interim answer: the real one follows
        }
        let body = if req.method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if is_chunked(&headers) {
            read_chunked(&mut r)?
        } else if let Some(len) = content_length(&headers)? {
            let mut body = vec![0; len];
            r.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            r.read_to_end(&mut body)?;
            body
        };
        return Ok(Response {
            status,
            reason,
            headers,
            body,
        });
    }
}

/// Writes `resp` to the client with a correct `Content-Length` (for a HEAD request: the
/// upstream's, and no body).
pub(crate) fn write_response(
    w: &mut TcpStream,
    resp: &Response,
    head_request: bool,
    close: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, resp.reason);
    for (name, value) in resp.headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if head_request {
        if let Some(len) = resp.header("content-length") {
            head.push_str(&format!("Content-Length: {len}\r\n"));
        }
    } else {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    if !head_request {
        w.write_all(&resp.body)?;
    }
    w.flush()
}

/// Percent-decodes `s` (and `+` as a space when `plus_is_space`, as in forms).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` (or a query string) as decoded pairs.
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Form-encodes one value (RFC 3986 unreserved characters kept).
pub(crate) fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Something that looks like an AWS request id (unique per process).
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "5741a7e0-{:04x}-4c1d-9c5e-{:012x}",
        std::process::id() & 0xffff,
        n
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An EC2 (query protocol) error: status 400, `<Response><Errors><Error>`.
pub(crate) fn ec2_error(code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        xml_escape(code),
        xml_escape(message),
        request_id()
    );
    Response::new(400, "text/xml;charset=UTF-8", body)
}

/// A Lambda (REST-JSON) error: `x-amzn-ErrorType` names it.
pub(crate) fn lambda_error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "message": message }).to_string();
    let mut resp = Response::new(status, "application/json", body);
    resp.headers.push(("x-amzn-ErrorType".into(), code.into()));
    resp
}

/// An S3 (REST-XML) error; `head` gives the empty body S3 answers to HEAD requests.
pub(crate) fn s3_error(
    status: u16,
    code: &str,
    message: &str,
    bucket: &str,
    head: bool,
) -> Response {
    if head {
        let mut resp = Response::new(status, "application/xml", Vec::new());
        resp.headers.push(("Content-Length".into(), "0".into()));
        return resp;
    }
    let id = request_id();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <BucketName>{}</BucketName><RequestId>{}</RequestId></Error>",
        xml_escape(code),
        xml_escape(message),
        xml_escape(bucket),
        id
    );
    Response::new(status, "application/xml", body)
}

/// 502 for the client when moto could not be reached.
pub(crate) fn bad_gateway(why: &str) -> Response {
    Response::new(
        502,
        "text/plain",
        format!("strict-aws: upstream failed: {why}"),
    )
}
