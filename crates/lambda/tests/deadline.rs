//! The invocation's deadline, through the real `bootstrap` over the Runtime API, moto and the real
//! sshd: a transfer that cannot finish and a stalled partner are both stopped before the deadline,
//! the record fails as transient (so it comes back), the response is on time, the interrupted
//! file is only ever a hidden temporary one (kept for the next delivery to resume, see
//! `resume.rs`), and the process serves the next invocation. Its tests run one at a time:
//! each measures time.

mod util;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::delay::DelayProxy;
use testkit::{scratch_dir, sshd, Watch};
use util::*;

/// One test at a time: each measures time against a deadline.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 64 MiB through a link of 8 MB/s needs 8 s: more than any invocation here has.
const BIG: usize = 64 << 20;
const LINK_RATE: u64 = 8_000_000;
/// The invocation's deadline: the default margin (3 s) stops the record at 3 s.
const DEADLINE: Duration = Duration::from_secs(6);

fn sshd_addr() -> SocketAddr {
    (sshd().host, sshd().port).into()
}

/// The one outcome line of an invocation that stopped a record at the deadline.
fn assert_stopped_at_deadline(log: &str, what: &str) {
    let o = outcomes(log);
    assert!(
        matches!(&o[..], [(out, class, reason)]
            if out == "failed" && class == "transient" && reason.contains("before the invocation's deadline") && reason.contains(what)),
        "one transient failure at the deadline ({what}): {o:?}\n{log}"
    );
}

/// A 64 MiB object, the partner behind an 8 MB/s link, the bootstrap, and the object's SQS event.
struct TooBig {
    aws: Aws,
    bucket: String,
    key: &'static str,
    data: Vec<u8>,
    local: std::path::PathBuf,
    link: DelayProxy,
    function: Bootstrap,
    event: Value,
}

impl TooBig {
    async fn start(hint: &str, key: &'static str) -> TooBig {
        let aws = aws().await;
        let bucket = aws.bucket(hint).await;
        let data = noise(BIG);
        aws.put(&bucket, key, &data).await;
        let (local, remote) = scratch_dir(hint);
        let link = DelayProxy::start_limited(sshd_addr(), Duration::from_millis(5), LINK_RATE);
        let secret = aws.secret(&behind(&link, &remote)).await;
        let function = Bootstrap::start(&secret, &[("SFTP_FORWARD_MIN_TIME_LEFT_SECS", "1")]);
        let event = sqs_event(&[(format!("m-{hint}"), s3_body(&bucket, key))]);
        TooBig {
            aws,
            bucket,
            key,
            data,
            local,
            link,
            function,
            event,
        }
    }

    /// Invokes with [`DEADLINE`] while `meanwhile` runs beside it on a thread (given the watch of
    /// the object's final name): the answer, how long it took, what `meanwhile` returned, and
    /// what the watch saw.
    fn invoke_watching(
        &self,
        meanwhile: impl FnOnce(&Watch) -> bool + Send,
    ) -> (testkit::Invocation, Duration, bool, testkit::watch::Seen) {
        let watch = Watch::start(&self.local, self.key, self.data.len() as u64);
        let started = Instant::now();
        let (answer, took, side) = std::thread::scope(|scope| {
            let side = scope.spawn(|| meanwhile(&watch));
            let answer = self.function.invoke(&self.event, DEADLINE);
            (answer, started.elapsed(), side.join().unwrap())
        });
        (answer, took, side, watch.stop())
    }

    /// The answer to the invocation that was stopped: on time, the message failed for a retry.
    fn assert_failed_on_time(&self, answer: &testkit::Invocation, took: Duration) {
        let log = self.function.log_text();
        assert!(took < DEADLINE, "answered after {took:?}\n{log}");
        assert!(answer.ok, "{answer:?}\n{log}");
        let response: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            failures(&response),
            [self.event["Records"][0]["messageId"].as_str().unwrap()],
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_too_big_for_the_invocation_is_stopped_in_time_and_its_temp_file_kept_to_resume()
{
    let _serial = SERIAL.lock().await;
    let big = TooBig::start("deadline-big", "big/too-big.bin").await;
    big.aws
        .put(&big.bucket, "next.txt", b"the next invocation")
        .await;

    // The transfer really ran: its temporary file grew past 1 MiB before it was stopped.
    let (answer, took, wrote, seen) =
        big.invoke_watching(|watch| watch.wait_for_temp_bytes(1 << 20, DEADLINE));
    eprintln!("64 MiB at 8 MB/s, {DEADLINE:?} deadline: answered after {took:?}");
    let log = big.function.log_text();
    assert!(wrote, "the transfer never started: {answer:?}\n{log}");
    big.assert_failed_on_time(&answer, took);
    assert_stopped_at_deadline(&log, "the next delivery resumes");
    assert!(!seen.complete && seen.partial.is_empty(), "{seen:?}");
    let left = left_in(&big.local);
    assert!(
        matches!(&left[..], [temp] if temp.starts_with("big/.too-big.bin.sfr-") && temp.ends_with(".part")),
        "only the resumable temporary file is on the partner: {left:?}"
    );

    // The same process answers the next invocation.
    let event = sqs_event(&[("m-next".to_owned(), s3_body(&big.bucket, "next.txt"))]);
    big.function.invoke_all_ok(&event, Duration::from_secs(60));
    assert_eq!(
        std::fs::read(big.local.join("next.txt")).unwrap(),
        b"the next invocation"
    );
    assert_eq!(left_in(&big.local), [left[0].as_str(), "next.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_stalls_mid_transfer_is_bounded_by_the_deadline_and_the_retry_cleans_up() {
    let _serial = SERIAL.lock().await;
    let big = TooBig::start("deadline-stall", "stall.bin").await;

    // Once 1 MiB is written the partner stops answering: no reply, no window, nothing lost.
    let (answer, took, paused, _) = big.invoke_watching(|watch| {
        let reached = watch.wait_for_temp_bytes(1 << 20, DEADLINE);
        if reached {
            big.link.pause();
        }
        reached
    });
    big.link.resume();
    eprintln!("stalled mid-transfer, {DEADLINE:?} deadline: answered after {took:?}");
    let log = big.function.log_text();
    assert!(paused, "the transfer never started: {answer:?}\n{log}");
    big.assert_failed_on_time(&answer, took);
    // What the stalled partner had acknowledged is recorded; the retry resumes from there.
    assert_stopped_at_deadline(&log, "the next delivery resumes");

    // SQS redelivers it to the same process; the partner answers again.
    let watch = Watch::start(&big.local, big.key, big.data.len() as u64);
    big.function
        .invoke_all_ok(&big.event, Duration::from_secs(120));
    let seen = watch.stop();
    assert!(seen.partial.is_empty(), "{seen:?}");
    assert!(
        std::fs::read(big.local.join(big.key)).unwrap() == big.data,
        "bytes differ"
    );
    assert_eq!(
        left_in(&big.local),
        [big.key],
        "the stalled attempt's temporary file is gone"
    );
}

/// A partner that accepts TCP connections and never says a word (not even the SSH banner).
/// Dropping it closes them all.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                held.extend(conn.ok());
            }
        });
        Silent { addr, stop }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_that_never_answers_fails_a_direct_invocation_before_the_deadline() {
    let _serial = SERIAL.lock().await;
    let aws = aws().await;
    let bucket = aws.bucket("deadline-silent").await;
    aws.put(&bucket, "quiet.txt", b"for a partner that answers")
        .await;
    let (local, remote) = scratch_dir("deadline-silent");
    let silent = Silent::start();
    let mut partner = partner_json(&remote);
    partner["Port"] = json!(silent.addr.port());
    let secret = aws.secret(&partner).await;
    // The connect timeout (10 s) alone would outlast the invocation; the secret is read for
    // every record, so the partner can be fixed below without a restart.
    let function = Bootstrap::start(
        &secret,
        &[
            ("SFTP_FORWARD_MIN_TIME_LEFT_SECS", "1"),
            ("SFTP_FORWARD_SECRET_TTL_SECS", "0"),
        ],
    );
    let event: Value = serde_json::from_str(&s3_body(&bucket, "quiet.txt")).unwrap();

    let started = Instant::now();
    let answer = function.invoke(&event, DEADLINE);
    let took = started.elapsed();
    let log = function.log_text();
    eprintln!("silent partner, {DEADLINE:?} deadline: answered after {took:?}");
    assert!(took < DEADLINE, "answered after {took:?}\n{log}");
    // A direct invocation fails, so that Lambda retries it.
    assert!(!answer.ok, "{answer:?}\n{log}");
    let error: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(error["errorType"], "SftpForward.RecordsFailed", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("quiet.txt: transient"),
        "{error}"
    );
    assert_stopped_at_deadline(&log, "no temporary file was started");

    // The same process, once the partner answers again, delivers the retry.
    drop(silent);
    aws.set_secret(&secret, &partner_json(&remote)).await;
    let answer = function.invoke(&event, Duration::from_secs(60));
    assert!(answer.ok, "{answer:?}\n{}", function.log_text());
    assert_eq!(
        std::fs::read(local.join("quiet.txt")).unwrap(),
        b"for a partner that answers"
    );
}
