//! A test-only AWS Lambda Runtime API: the HTTP endpoint that a custom runtime (the compiled
//! `bootstrap`, built on `lambda_runtime`) polls for events and answers to, so that integration
//! tests can run the real binary without the Lambda service or `cargo lambda`.
//!
//! A test starts one [`RuntimeApi`], spawns `bootstrap` with `AWS_LAMBDA_RUNTIME_API` set to
//! [`RuntimeApi::address`] and feeds it events with [`RuntimeApi::invoke`].
//!
//! # What it serves
//!
//! The documented paths under `/2018-06-01/runtime/`:
//!
//! - `GET invocation/next` waits, with no time limit, until an invocation is queued, then answers
//!   200 with the payload and the `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`,
//!   `-Invoked-Function-Arn` ([`FUNCTION_ARN`]) and `-Trace-Id` headers;
//! - `POST invocation/{id}/response` and `POST invocation/{id}/error` answer 202 and complete
//!   the waiting [`RuntimeApi::invoke`]; an id that was never handed out, or was answered
//!   already, gets 400;
//! - `POST init/error` answers 202 and is kept for [`RuntimeApi::init_error`];
//! - anything else gets 404.
//!
//! HTTP/1.1 as `hyper`'s client speaks it: keep-alive connections (one thread each), request
//! bodies with `Content-Length` or `Transfer-Encoding: chunked` (with trailers, as
//! `lambda_runtime` sends streamed responses), `Connection: close`. Every answer carries a
//! `Content-Length`.
//!
//! # Shutting down
//!
//! Dropping the [`RuntimeApi`] stops the accept loop and makes waiting `next` requests close
//! their connections (so a `bootstrap` still polling exits with a connection error). All threads
//! are detached: none keeps the test process alive.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the function is told it is (`Lambda-Runtime-Invoked-Function-Arn`).
pub const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:sftp-forward";

const PREFIX: &str = "/2018-06-01/runtime/";
/// Largest request head (request line and headers, or chunked trailers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted. Lambda's own limits are 6 MB buffered and 20 MB streamed.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Content type of a streamed response that starts with a metadata prelude.
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// What ends the metadata prelude of such a response.
const PRELUDE_END: &str = "\0\0\0\0\0\0\0\0";
/// How often a waiting `next` checks that its client is still connected.
const LIVENESS_POLL: Duration = Duration::from_millis(200);
/// How many lines of [`State::seen`] are kept for error messages.
const SEEN_LINES: usize = 100;

/// A Lambda Runtime API endpoint on 127.0.0.1 (bound before anything else, port 0), serving one
/// function. See the module doc.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// The function's answer to one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The `Lambda-Runtime-Aws-Request-Id` it was given.
    pub request_id: String,
    /// `true` for `/response`, `false` for `/error` (or a streamed response whose trailers carry
    /// an error).
    pub ok: bool,
    /// The response body, or the error JSON.
    pub body: String,
    /// `Lambda-Runtime-Function-Error-Type` of an error (header or trailer).
    pub error_type: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `state`.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Invocations not yet taken by `next`.
    queue: VecDeque<Queued>,
    /// Taken by `next` and not answered yet.
    delivered: HashSet<String>,
    /// Answers by request id.
    answers: HashMap<String, Invocation>,
    init_error: Option<String>,
    /// One line per request served, for the error of a timed-out [`RuntimeApi::invoke`].
    seen: VecDeque<String>,
    shutdown: bool,
}

struct Queued {
    request_id: String,
    payload: String,
    deadline_ms: u128,
}

impl State {
    fn note(&mut self, line: String) {
        if self.seen.len() == SEEN_LINES {
            self.seen.pop_front();
        }
        self.seen.push_back(line);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not take the whole endpoint down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RuntimeApi {
    /// Binds 127.0.0.1:0 and serves on background threads (one per connection, keep-alive).
    ///
    /// Panics if the port cannot be bound.
    pub fn start() -> RuntimeApi {
        RuntimeApi::start_on(Ipv4Addr::LOCALHOST)
    }

    /// Like [`RuntimeApi::start`] on `host:0` (a function in a network namespace reaches the
    /// egress testbed's platform address, not 127.0.0.1).
    pub fn start_on(host: Ipv4Addr) -> RuntimeApi {
        let listener = TcpListener::bind((host, 0))
            .unwrap_or_else(|e| panic!("testkit: runtime API: bind {host}:0: {e}"));
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let accept_shared = shared.clone();
        thread::Builder::new()
            .name(format!("runtime-api-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn the runtime API accept thread");
        RuntimeApi { addr, shared }
    }

    /// `ADDRESS:PORT`: the value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `payload` (JSON text) as the next invocation and waits until the function answers
    /// with `/response` or `/error`, or `timeout` passes: then `Err` says whether the function
    /// took the invocation and lists the requests the endpoint saw. `deadline` is what the
    /// function is told via `Lambda-Runtime-Deadline-Ms` (now + `deadline`).
    pub fn invoke(
        &self,
        payload: &str,
        deadline: Duration,
        timeout: Duration,
    ) -> Result<Invocation, String> {
        let started = Instant::now();
        let request_id = new_request_id();
        let mut state = self.shared.lock();
        state.queue.push_back(Queued {
            request_id: request_id.clone(),
            payload: payload.to_owned(),
            deadline_ms: epoch_ms() + deadline.as_millis(),
        });
        state.note(format!("invoke: queued {request_id}"));
        self.shared.changed.notify_all();
        loop {
            if let Some(answer) = state.answers.get(&request_id) {
                return Ok(answer.clone());
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // Never hand out an invocation that nobody waits for any more.
        let before = state.queue.len();
        state.queue.retain(|q| q.request_id != request_id);
        let what = if state.queue.len() < before {
            "the function never took it (no GET .../invocation/next picked it up)"
        } else {
            "the function took it but did not answer"
        };
        let mut msg = format!("invocation {request_id}: no answer within {timeout:?}: {what}");
        if let Some(body) = &state.init_error {
            msg += &format!("\ninit error posted: {body}");
        }
        msg += "\nrequests seen (oldest first):";
        for line in &state.seen {
            msg += "\n  ";
            msg += line;
        }
        Err(msg)
    }

    /// The body posted to `/runtime/init/error`, if any.
    pub fn init_error(&self) -> Option<String> {
        self.shared.lock().init_error.clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.changed.notify_all();
        // Wake the accept loop so that it sees the flag; it closes the listener by returning.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.lock().shutdown {
            return;
        }
        let Ok(stream) = stream else { continue };
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new()
            .name("runtime-api-conn".into())
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                if let Err(e) = serve(stream, &conn_shared) {
                    conn_shared
                        .lock()
                        .note(format!("connection from {peer}: {e}"));
                }
            });
        if let Err(e) = spawned {
            shared
                .lock()
                .note(format!("could not spawn a connection thread: {e}"));
        }
    }
}

/// Header or trailer fields, names lower-cased, in the order received.
type Fields = Vec<(String, String)>;

/// One parsed request.
struct Request {
    method: String,
    path: String,
    headers: Fields,
    body: Vec<u8>,
    /// Chunked trailers.
    trailers: Fields,
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

fn find<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// What to send back.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    fn error(status: u16, error_type: &str, message: &str) -> Reply {
        let body = format!(
            r#"{{"errorMessage":"{}","errorType":"{error_type}"}}"#,
            json_escape(message)
        );
        Reply::json(status, &body)
    }
}

/// Serves requests on one connection until the client closes it, asks to, or errs.
fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()), // closed between requests
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                let reply = Reply::error(400, "BadRequest", &e.to_string());
                write_reply(&mut writer, &reply, true)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let line = format!("{} {}", request.method, request.path);
        let Some(reply) = route(&request, shared, &writer) else {
            // A `next` that ended without an invocation: shutdown or the client went away.
            shared.lock().note(format!("{line} -> connection closed"));
            return Ok(());
        };
        let status = reply.status;
        let sent = write_reply(&mut writer, &reply, request.close);
        shared.lock().note(format!("{line} -> {status}"));
        sent?;
        if request.close {
            return Ok(());
        }
    }
}

/// The reply to `request`; `None` when the connection should just be closed.
fn route(request: &Request, shared: &Shared, stream: &TcpStream) -> Option<Reply> {
    let Some(rest) = request.path.strip_prefix(PREFIX) else {
        return Some(not_found(request));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let reply = match (request.method.as_str(), parts.as_slice()) {
        ("GET", ["invocation", "next"]) => return next(shared, stream),
        ("POST", ["invocation", id, kind @ ("response" | "error")]) if !id.is_empty() => {
            answer(request, shared, id, *kind == "response")
        }
        ("POST", ["init", "error"]) => {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            shared.lock().init_error = Some(body);
            shared.changed.notify_all();
            Reply::json(202, r#"{"status":"OK"}"#)
        }
        _ => not_found(request),
    };
    Some(reply)
}

fn not_found(request: &Request) -> Reply {
    let message = format!("no such endpoint: {} {}", request.method, request.path);
    Reply::error(404, "NotFound", &message)
}

/// `GET .../invocation/next`: waits for an invocation, with no time limit, while the client is
/// connected and the endpoint not dropped.
fn next(shared: &Shared, stream: &TcpStream) -> Option<Reply> {
    let mut state = shared.lock();
    let queued = loop {
        // A runtime that was killed while polling must not swallow the next invocation.
        if state.shutdown || !peer_connected(stream) {
            return None;
        }
        if let Some(queued) = state.queue.pop_front() {
            break queued;
        }
        state = shared
            .changed
            .wait_timeout(state, LIVENESS_POLL)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    };
    state.delivered.insert(queued.request_id.clone());
    drop(state);
    Some(Reply {
        status: 200,
        headers: vec![
            ("Content-Type", "application/json".into()),
            ("Lambda-Runtime-Aws-Request-Id", queued.request_id),
            ("Lambda-Runtime-Deadline-Ms", queued.deadline_ms.to_string()),
            ("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN.into()),
            ("Lambda-Runtime-Trace-Id", new_trace_id()),
        ],
        body: queued.payload.into_bytes(),
    })
}

/// `POST .../invocation/{id}/response` (`ok`) or `.../error`.
fn answer(request: &Request, shared: &Shared, id: &str, ok: bool) -> Reply {
    let mut state = shared.lock();
    if !state.delivered.remove(id) {
        let message = if state.answers.contains_key(id) {
            format!("invocation {id} was answered already")
        } else {
            format!("invocation {id} was never handed out")
        };
        return Reply::error(400, "InvalidRequestID", &message);
    }
    let mut answer = Invocation {
        request_id: id.to_owned(),
        ok,
        body: String::from_utf8_lossy(&request.body).into_owned(),
        error_type: request
            .header("lambda-runtime-function-error-type")
            .map(str::to_owned),
    };
    // A streamed response (`Lambda-Runtime-Function-Response-Mode: streaming`) through a Function
    // URL starts with a JSON metadata prelude and 8 NUL bytes: keep only what the caller would get.
    if request.header("content-type") == Some(HTTP_INTEGRATION) {
        if let Some(at) = answer.body.find(PRELUDE_END) {
            answer.body.drain(..at + PRELUDE_END.len());
        }
    }
    // A streamed response reports a failure after its body, in trailers (the error body base64).
    if let Some(error_type) = find(&request.trailers, "lambda-runtime-function-error-type") {
        answer.ok = false;
        answer.error_type = Some(error_type.to_owned());
        if let Some(body) = find(&request.trailers, "lambda-runtime-function-error-body") {
            answer.body = base64_decode(body)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|| body.to_owned());
        }
    }
    state.answers.insert(id.to_owned(), answer);
    shared.changed.notify_all();
    Reply::json(202, r#"{"status":"OK"}"#)
}

/// Whether the client of a waiting request is still there: a closed connection reads as EOF.
fn peer_connected(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let connected = match stream.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true, // the client sent more already (pipelining): still there
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_ok() && connected
}

/// Reads one request; `Ok(None)` on a clean EOF before its first byte. Malformed requests are
/// `ErrorKind::InvalidData`.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD;
    let Some(request_line) = read_line(reader, &mut budget)? else {
        return Ok(None);
    };
    let mut words = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(invalid(format!("bad request line {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("unsupported version {version:?}")));
    }
    let headers = read_fields(reader, &mut budget)?;
    let connection = find(&headers, "connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    let close = if version == "HTTP/1.0" {
        !connection.contains("keep-alive")
    } else {
        connection.split(',').any(|t| t.trim() == "close")
    };
    let path = target.split('?').next().unwrap_or(target).to_owned();

    if find(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = find(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let (body, trailers) = if chunked {
        read_chunked(reader)?
    } else if let Some(length) = find(&headers, "content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        if length > MAX_BODY {
            return Err(invalid(format!("body of {length} bytes is too large")));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        (body, Vec::new())
    } else {
        (Vec::new(), Vec::new()) // a request with neither has no body
    };
    Ok(Some(Request {
        method: method.to_owned(),
        path,
        headers,
        body,
        trailers,
        close,
    }))
}

/// A chunked body and its trailers.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<(Vec<u8>, Fields)> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(reader, &mut budget)?
            .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            let trailers = read_fields(reader, &mut budget)?;
            return Ok((body, trailers));
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid(format!("chunked body over {MAX_BODY} bytes")));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk data not followed by CRLF".into()));
        }
        budget = MAX_HEAD; // the limit is per line group, not per body
    }
}

/// Header (or trailer) lines up to the empty line; names lower-cased, values trimmed.
fn read_fields(reader: &mut BufReader<TcpStream>, budget: &mut usize) -> io::Result<Fields> {
    let mut fields = Vec::new();
    loop {
        let line =
            read_line(reader, budget)?.ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
        if line.is_empty() {
            return Ok(fields);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

/// One line without its CRLF (or bare LF); `None` on EOF before any byte. Counts against
/// `budget` so that a client cannot make the thread buffer without bound.
fn read_line(reader: &mut BufReader<TcpStream>, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if read > *budget {
        return Err(invalid(format!("request head over {MAX_HEAD} bytes")));
    }
    if line.last() != Some(&b'\n') {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    *budget -= read;
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("request head is not UTF-8".into()))
}

fn write_reply(stream: &mut TcpStream, reply: &Reply, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {}\r\n", reply.body.len());
    if close {
        head += "Connection: close\r\n";
    }
    head += "\r\n";
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&reply.body);
    stream.write_all(&bytes)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Unknown",
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message)
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis()
}

/// Unique within the process and unlikely to repeat across processes: the process id and a
/// counter, shaped like a UUID.
fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}-0000-4000-8000-{n:012x}", std::process::id())
}

/// An X-Ray trace header in the format Lambda passes on (`Root=1-<epoch secs>-<24 hex>;...`).
fn new_trace_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let secs = epoch_ms() / 1000;
    let pid = std::process::id();
    format!("Root=1-{secs:08x}-{pid:08x}{n:016x};Parent={n:016x};Sampled=0")
}

fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (padding optional); `None` if `text` is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The variables Lambda sets for a function with JSON logs, pointed at the Runtime API at
/// `api` (`ADDRESS:PORT`): what `bootstrap` reads besides its own settings and AWS credentials.
pub fn platform_env(
    api: &str,
    function: &str,
    memory_mb: u32,
    log_stream: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", "/usr/bin:/bin".to_owned()),
        ("AWS_LAMBDA_RUNTIME_API", api.to_owned()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_owned()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
    ]
}

/// A function process (the compiled `bootstrap`, perhaps inside a namespace) wired to its own
/// Runtime API endpoint, its stdout and stderr in a log file; killed when dropped.
pub struct Function {
    /// The endpoint it polls.
    pub api: RuntimeApi,
    /// Where its output goes.
    pub log: std::path::PathBuf,
    child: std::process::Child,
}

impl Function {
    /// Spawns `cmd` with `AWS_LAMBDA_RUNTIME_API` set to `api`'s address, stdin closed and its
    /// output written to `log` (created or truncated).
    pub fn spawn(
        mut cmd: std::process::Command,
        api: RuntimeApi,
        log: impl Into<std::path::PathBuf>,
    ) -> std::io::Result<Function> {
        let log = log.into();
        let out = std::fs::File::create(&log)?;
        cmd.env("AWS_LAMBDA_RUNTIME_API", api.address())
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn()?;
        Ok(Function { api, log, child })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("eyJhIjoxfQ==").unwrap(), br#"{"a":1}"#);
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn request_ids_are_unique() {
        assert_ne!(new_request_id(), new_request_id());
    }
}
