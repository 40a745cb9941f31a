//! The Lambda Runtime API emulator driven by a raw HTTP/1.1 client, the way `lambda_runtime`
//! drives it: long-polled `next`, answers by request id, chunked bodies, keep-alive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testkit::runtime_api::FUNCTION_ARN;
use testkit::RuntimeApi;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const DEADLINE: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive connection to the endpoint.
struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

/// A response as read off the wire; header names lower-cased.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }
}

impl Conn {
    fn open(api: &RuntimeApi) -> Conn {
        let stream = TcpStream::connect(api.address()).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).unwrap();
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: rt\r\n\r\n"));
        self.read_response()
    }

    fn post(&mut self, path: &str, extra_headers: &str, body: &str) -> Response {
        self.send(&format!(
            "POST {path} HTTP/1.1\r\nHost: rt\r\ncontent-type: application/json\r\n\
             {extra_headers}content-length: {}\r\n\r\n{body}",
            body.len()
        ));
        self.read_response()
    }

    /// Reads one response; the server always sends `Content-Length`.
    fn read_response(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = response.header("content-length").parse().unwrap();
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        response.body = String::from_utf8(body).unwrap();
        response
    }

    /// `true` if the server has closed the connection (EOF).
    fn closed_by_server(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(0))
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn next_waits_for_invoke_then_response_completes_it() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    let payload = r#"{"Records":[{"s3":{"object":{"key":"a%2Fb.csv"}}}]}"#;
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let poller = s.spawn(move || {
            let event = conn.get(NEXT);
            tx.send(()).unwrap();
            (conn, event)
        });
        // Nothing queued: `next` must still be waiting.
        assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());

        let before = epoch_ms();
        let invoker = s.spawn(|| api.invoke(payload, DEADLINE, TIMEOUT));
        let (mut conn, event) = poller.join().unwrap();
        assert_eq!(event.status, 200);
        assert_eq!(event.body, payload);
        assert_eq!(event.header("content-type"), "application/json");
        assert_eq!(
            event.header("lambda-runtime-invoked-function-arn"),
            FUNCTION_ARN
        );
        assert!(event
            .header("lambda-runtime-trace-id")
            .starts_with("Root=1-"));
        let deadline: u128 = event.header("lambda-runtime-deadline-ms").parse().unwrap();
        let expected = before + DEADLINE.as_millis();
        assert!(
            deadline >= expected && deadline < expected + 5_000,
            "deadline {deadline} not about now + 60 s ({expected})"
        );
        let id = event.header("lambda-runtime-aws-request-id").to_owned();

        // Same connection (keep-alive): the answer.
        let path = format!("/2018-06-01/runtime/invocation/{id}/response");
        let accepted = conn.post(&path, "", r#"{"forwarded":1}"#);
        assert_eq!(accepted.status, 202, "{accepted:?}");

        let answer = invoker.join().unwrap().unwrap();
        assert_eq!(answer.request_id, id);
        assert!(answer.ok);
        assert_eq!(answer.body, r#"{"forwarded":1}"#);
        assert_eq!(answer.error_type, None);

        // A second answer to the same invocation is refused.
        let again = conn.post(&path, "", "{}");
        assert_eq!(again.status, 400, "{again:?}");
    });
}

#[test]
fn error_round_trip_keeps_type_and_body() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    thread::scope(|s| {
        let invoker = s.spawn(|| api.invoke("{}", DEADLINE, TIMEOUT));
        let event = conn.get(NEXT);
        let id = event.header("lambda-runtime-aws-request-id");
        let error = r#"{"errorType":"Transient","errorMessage":"partner down"}"#;
        let accepted = conn.post(
            &format!("/2018-06-01/runtime/invocation/{id}/error"),
            "Lambda-Runtime-Function-Error-Type: Transient\r\n",
            error,
        );
        assert_eq!(accepted.status, 202, "{accepted:?}");
        let answer = invoker.join().unwrap().unwrap();
        assert!(!answer.ok);
        assert_eq!(answer.request_id, id);
        assert_eq!(answer.body, error);
        assert_eq!(answer.error_type.as_deref(), Some("Transient"));
    });
}

#[test]
fn chunked_response_body_is_reassembled() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    thread::scope(|s| {
        let invoker = s.spawn(|| api.invoke("{}", DEADLINE, TIMEOUT));
        let event = conn.get(NEXT);
        let id = event.header("lambda-runtime-aws-request-id");
        // Two chunks (one with an extension), then trailers, as hyper sends a streamed body.
        conn.send(&format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: rt\r\n\
             Transfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
             6\r\n{{\"ok\":\r\n5;ext=1\r\ntrue}}\r\n0\r\nX-Checksum: 1\r\n\r\n"
        ));
        let accepted = conn.read_response();
        assert_eq!(accepted.status, 202, "{accepted:?}");
        let answer = invoker.join().unwrap().unwrap();
        assert!(answer.ok);
        assert_eq!(answer.body, r#"{"ok":true}"#);
    });
}

#[test]
fn streamed_response_with_error_trailer_is_an_error() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    thread::scope(|s| {
        let invoker = s.spawn(|| api.invoke("{}", DEADLINE, TIMEOUT));
        let event = conn.get(NEXT);
        let id = event.header("lambda-runtime-aws-request-id");
        // base64 of {"errorMessage":"boom"}
        conn.send(&format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: rt\r\n\
             Transfer-Encoding: chunked\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n\r\n\
             2\r\nhi\r\n0\r\nLambda-Runtime-Function-Error-Type: Runtime.Boom\r\n\
             Lambda-Runtime-Function-Error-Body: eyJlcnJvck1lc3NhZ2UiOiJib29tIn0=\r\n\r\n"
        ));
        assert_eq!(conn.read_response().status, 202);
        let answer = invoker.join().unwrap().unwrap();
        assert!(!answer.ok);
        assert_eq!(answer.error_type.as_deref(), Some("Runtime.Boom"));
        assert_eq!(answer.body, r#"{"errorMessage":"boom"}"#);
    });
}

#[test]
fn streamed_response_loses_its_metadata_prelude() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    thread::scope(|s| {
        let invoker = s.spawn(|| api.invoke("{}", DEADLINE, TIMEOUT));
        let event = conn.get(NEXT);
        let id = event.header("lambda-runtime-aws-request-id");
        // As lambda_runtime 1.5 streams: the prelude, 8 NULs, then the body, in separate chunks.
        let prelude = r#"{"statusCode":200,"headers":{},"cookies":[]}"#;
        conn.send(&format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: rt\r\n\
             Transfer-Encoding: chunked\r\nLambda-Runtime-Function-Response-Mode: streaming\r\n\
             Content-Type: application/vnd.awslambda.http-integration-response\r\n\r\n\
             {:x}\r\n{prelude}\r\n8\r\n{}\r\n5\r\nhello\r\n0\r\n\r\n",
            prelude.len(),
            "\0".repeat(8)
        ));
        assert_eq!(conn.read_response().status, 202);
        let answer = invoker.join().unwrap().unwrap();
        assert!(answer.ok);
        assert_eq!(answer.body, "hello");
    });
}

#[test]
fn keep_alive_serves_several_requests_and_init_error_is_kept() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    assert_eq!(api.init_error(), None);
    let body = r#"{"errorType":"Config","errorMessage":"SFTP_HOST missing"}"#;
    let first = conn.post(
        "/2018-06-01/runtime/init/error",
        "Lambda-Runtime-Function-Error-Type: Runtime.InitError\r\n",
        body,
    );
    assert_eq!(first.status, 202);
    let second = conn.get("/2018-06-01/runtime/unknown");
    assert_eq!(second.status, 404);
    assert_eq!(api.init_error().as_deref(), Some(body));
}

#[test]
fn unknown_paths_are_404_and_connection_close_is_honoured() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    assert_eq!(
        conn.get("/2018-06-01/runtime/invocation/x/other").status,
        404
    );
    assert_eq!(conn.post(NEXT, "", "{}").status, 404, "POST to next");
    conn.send("GET /hello HTTP/1.1\r\nHost: rt\r\nConnection: close\r\n\r\n");
    let last = conn.read_response();
    assert_eq!(last.status, 404);
    assert_eq!(last.header("connection"), "close");
    assert!(conn.closed_by_server());
}

#[test]
fn answer_to_unknown_request_id_is_400() {
    let api = RuntimeApi::start();
    let mut conn = Conn::open(&api);
    let path = "/2018-06-01/runtime/invocation/no-such-id/response";
    assert_eq!(conn.post(path, "", "{}").status, 400);
}

#[test]
fn invoke_times_out_and_withdraws_an_invocation_nobody_took() {
    let api = RuntimeApi::start();
    let err = api
        .invoke("{}", DEADLINE, Duration::from_millis(200))
        .unwrap_err();
    assert!(err.contains("never took it"), "{err}");
    // The withdrawn invocation is not handed to a runtime that polls later.
    let mut conn = Conn::open(&api);
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    conn.send(&format!("GET {NEXT} HTTP/1.1\r\nHost: rt\r\n\r\n"));
    let mut byte = [0u8; 1];
    let read = conn.reader.read(&mut byte);
    assert!(read.is_err(), "next answered {read:?} with nothing queued");
}

#[test]
fn a_poller_that_went_away_does_not_swallow_the_next_invocation() {
    let api = RuntimeApi::start();
    // A runtime killed while long-polling.
    let mut gone = Conn::open(&api);
    gone.send(&format!("GET {NEXT} HTTP/1.1\r\nHost: rt\r\n\r\n"));
    thread::sleep(Duration::from_millis(100));
    drop(gone);
    thread::sleep(Duration::from_millis(500)); // longer than the liveness poll
    let mut conn = Conn::open(&api);
    thread::scope(|s| {
        let invoker = s.spawn(|| api.invoke(r#"{"n":2}"#, DEADLINE, TIMEOUT));
        let event = conn.get(NEXT);
        assert_eq!(event.body, r#"{"n":2}"#);
        let id = event.header("lambda-runtime-aws-request-id");
        let path = format!("/2018-06-01/runtime/invocation/{id}/response");
        assert_eq!(conn.post(&path, "", "null").status, 202);
        assert!(invoker.join().unwrap().unwrap().ok);
    });
}
