//! The static egress IPs, proven with real packets: the compiled `bootstrap` runs inside the
//! private-subnet namespaces of the egress testbed (`tests/egress/testbed`), reads its object from
//! moto and its secret over the platform link, and reaches the partner's real sshd only through
//! its subnet's NAT. The partner's firewall admits the two EIPs and nobody else; its sshd log says
//! which source address each login came from.
//!
//! The tests share one testbed and run one at a time (they take NATs down and change routes). The
//! failover test also runs `deploy/provision` (apply, failover, failback) on the same moto and
//! routes the testbed as the route tables it wrote there say.

mod stack;
mod util;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};
use stack::Stack;
use testkit::testbed::{Testbed, ECHO_URL, EIPS, PARTNER_IP, PARTNER_NETNS, PLATFORM_IP};
use testkit::{Invocation, RuntimeApi, Sshd};
use util::*;

struct World {
    testbed: Testbed,
    partner: Sshd,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let testbed = Testbed::up().unwrap_or_else(|e| panic!("egress testbed: {e}"));
        // Reachable from the namespaces over the platform link, as AWS's endpoints are from a VPC.
        testkit::moto_on(PLATFORM_IP);
        let partner = testkit::sshd_in_netns(PARTNER_NETNS, PARTNER_IP, 22)
            .unwrap_or_else(|e| panic!("the partner's sshd: {e}"));
        World { testbed, partner }
    })
}

/// One test at a time: they change the shared network. (A tokio mutex: its guard is held across
/// the tests' awaits, and a failed test must not poison it for the next.)
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The function, running in private subnet `subnet`'s namespace, driven over its Runtime API.
struct Function(testkit::Function);

impl Function {
    fn start(subnet: u8, secret: &str, log: &Path) -> Function {
        Function::start_expecting(subnet, secret, log, &EIPS)
    }

    /// With `SFTP_FORWARD_EXPECTED_EGRESS_IPS` = `expected` and the testbed's echo service.
    fn start_expecting(subnet: u8, secret: &str, log: &Path, expected: &[Ipv4Addr]) -> Function {
        Function::start_env(subnet, secret, log, expected, &[])
    }

    /// As [`Function::start_expecting`], with more environment variables.
    fn start_env(
        subnet: u8,
        secret: &str,
        log: &Path,
        expected: &[Ipv4Addr],
        extra: &[(&str, &str)],
    ) -> Function {
        let w = world();
        let api = RuntimeApi::start_on(PLATFORM_IP);
        let mut cmd = w
            .testbed
            .command(&format!("priv{subnet}"), env!("CARGO_BIN_EXE_bootstrap"));
        cmd.env_clear()
            .envs(lambda_env(&api.address(), secret))
            // A dead NAT shows up as "no route to host" after ARP gives up (~3 s); never wait longer.
            .env("SFTP_FORWARD_CONNECT_TIMEOUT_SECS", "8")
            .env("SFTP_FORWARD_EGRESS_ECHO_URL", ECHO_URL)
            .env(
                "SFTP_FORWARD_EXPECTED_EGRESS_IPS",
                expected
                    .iter()
                    .map(Ipv4Addr::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .envs(extra.iter().copied());
        Function(testkit::Function::spawn(cmd, api, log).expect("start bootstrap in its namespace"))
    }

    fn invoke(&self, payload: &Value) -> Invocation {
        let text = payload.to_string();
        tokio::task::block_in_place(|| {
            self.0
                .api
                .invoke(&text, Duration::from_secs(120), Duration::from_secs(90))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The part of the partner's sshd log written while `f` ran.
fn partner_log_during(f: impl FnOnce()) -> String {
    let partner = &world().partner;
    let before = partner.log().len();
    f();
    partner.log()[before..].to_owned()
}

/// An S3 object, a secret for the namespaced partner, and where the file will land.
struct Delivery {
    bucket: String,
    key: String,
    body: Vec<u8>,
    secret: String,
    local_dir: std::path::PathBuf,
}

async fn delivery(aws: &Aws, hint: &str) -> Delivery {
    let partner = &world().partner;
    let bucket = aws.bucket(hint).await;
    let key = format!("outbound/{hint}.csv");
    let body = format!("{hint}: these bytes crossed a NAT\n")
        .repeat(2000)
        .into_bytes();
    aws.put(&bucket, &key, &body).await;
    let (local_dir, remote) = partner.scratch_dir(hint);
    let secret = aws.secret(&partner.partner_json(&remote)).await;
    Delivery {
        bucket,
        key,
        body,
        secret,
        local_dir,
    }
}

fn log_path(hint: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{}.log", unique(hint)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_private_subnet_reaches_the_partner_from_its_own_nats_eip() {
    let _serial = SERIAL.lock().await;
    let w = world();
    let aws = aws().await;
    for (subnet, eip) in [(1u8, EIPS[0]), (2, EIPS[1])] {
        let d = delivery(&aws, &format!("subnet{subnet}")).await;
        let log = log_path("egress-fn");
        let function = Function::start(subnet, &d.secret, &log);
        let mut answer = None;
        let sshd_log = partner_log_during(|| {
            answer = Some(function.invoke(&sqs_event(&[(
                format!("m-{subnet}"),
                s3_body(&d.bucket, &d.key),
            )])));
        });
        let answer = answer.unwrap();
        let fn_log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(answer.ok, "{answer:?}\nfunction log:\n{fn_log}");
        let response: Value = serde_json::from_str(&answer.body).unwrap();
        assert!(
            failures(&response).is_empty(),
            "{response}\nfunction log:\n{fn_log}"
        );
        assert_eq!(
            std::fs::read(d.local_dir.join(&d.key)).unwrap(),
            d.body,
            "the bytes on the partner's disk"
        );
        assert_eq!(
            w.partner.login_sources(&sshd_log),
            [eip.to_string()],
            "private subnet {subnet} must reach the partner from NAT {subnet}'s EIP; sshd log:\n{sshd_log}"
        );
        std::fs::remove_file(&log).ok();
    }
}

#[test]
fn a_host_outside_the_nats_is_refused_by_the_partners_allowlist() {
    let _serial = SERIAL.blocking_lock();
    let w = world();
    let connect = |port: u16| {
        w.testbed
            .command("outside", "bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/{PARTNER_IP}/{port}")])
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    // The outside host does reach the partner (its public echo service)...
    let echo = connect(80);
    assert!(
        echo.status.success(),
        "the outside host has a path to the partner: {}",
        String::from_utf8_lossy(&echo.stderr)
    );
    // ...but its firewall refuses the outside host's connection to sshd.
    let log = partner_log_during(|| {
        let ssh = connect(22);
        assert!(
            !ssh.status.success(),
            "the partner admitted {}",
            "203.0.113.99"
        );
        let stderr = String::from_utf8_lossy(&ssh.stderr);
        assert!(stderr.contains("Connection refused"), "{stderr}");
    });
    assert!(
        !log.contains("203.0.113.99"),
        "sshd must never see the outside host: {log}"
    );
}

/// Asserts that the function answered `answer` with no failed item; else shows its `log`.
fn assert_delivered(answer: &Invocation, log: &Path) {
    let response: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    assert!(
        answer.ok && failures(&response).is_empty(),
        "{answer:?}\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// NAT one down: subnet two still delivers; subnet one fails transiently within the connect
/// bound; `deploy/provision failover --az one` (its route tables applied to the testbed) and
/// every record from subnet one is delivered from EIP two; NAT one back, `failback`, and subnet
/// one leaves from EIP one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_one_down_fails_transiently_until_failover_and_failback_restores_eip_one() {
    let _serial = SERIAL.lock().await;
    let w = world();
    let aws = aws().await;
    let d1 = delivery(&aws, "az-one").await;
    let d1b = delivery(&aws, "az-one-b").await;
    let d2 = delivery(&aws, "az-two").await;
    let (_, remote) = w.partner.scratch_dir("fo-stack");
    let stack = Stack::apply(&w.partner.partner_json(&remote));
    assert_eq!(stack.sync_routes(&w.testbed), [1, 2], "as apply built them");
    let log1 = log_path("egress-az1");
    let log2 = log_path("egress-az2");
    let f1 = Function::start(1, &d1.secret, &log1);
    let f2 = Function::start(2, &d2.secret, &log2);

    w.testbed.nat_down(1).unwrap();
    // Whatever happens below, the next test gets the network back as it was.
    struct Restore<'a>(&'a Testbed);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let _ = self.0.route(1, 1);
            let _ = self.0.route(2, 2);
            let _ = self.0.nat_up(1);
        }
    }
    let _restore = Restore(&w.testbed);

    // AZ two is untouched.
    let batch2 = sqs_event(&[("m-two".to_owned(), s3_body(&d2.bucket, &d2.key))]);
    assert_delivered(&f2.invoke(&batch2), &log2);
    assert_eq!(std::fs::read(d2.local_dir.join(&d2.key)).unwrap(), d2.body);

    // AZ one's function cannot reach the partner: the item is reported failed, so SQS retries it.
    let batch1 = sqs_event(&[("m-one".to_owned(), s3_body(&d1.bucket, &d1.key))]);
    let started = std::time::Instant::now();
    let answer1 = f1.invoke(&batch1);
    let response1: Value = serde_json::from_str(&answer1.body).unwrap();
    let fn_log = std::fs::read_to_string(&log1).unwrap_or_default();
    assert!(answer1.ok, "{answer1:?}\n{fn_log}");
    assert_eq!(failures(&response1), ["m-one"], "{fn_log}");
    assert!(
        fn_log.contains("transient"),
        "the failure is transient: {fn_log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed within the connect bound, took {:?}",
        started.elapsed()
    );
    assert!(
        !d1.local_dir.join(&d1.key).exists(),
        "nothing delivered while the NAT is down"
    );

    // The operator fails AZ one over; the testbed follows the route tables the command wrote.
    let out = stack.run(&["failover", "--az", "one"]);
    assert!(
        out.contains("private subnet one routes through NAT two (failed over)"),
        "{out}"
    );
    assert_eq!(stack.sync_routes(&w.testbed), [2, 2]);
    // SQS redelivers the failed record, with one that arrived meanwhile: both are delivered.
    let batch = sqs_event(&[
        ("m-one".to_owned(), s3_body(&d1.bucket, &d1.key)),
        ("m-one-b".to_owned(), s3_body(&d1b.bucket, &d1b.key)),
    ]);
    let mut retry = None;
    let sshd_log = partner_log_during(|| retry = Some(f1.invoke(&batch)));
    assert_delivered(&retry.unwrap(), &log1);
    // (Both land in the directory of f1's secret, d1's.)
    for d in [&d1, &d1b] {
        assert_eq!(std::fs::read(d1.local_dir.join(&d.key)).unwrap(), d.body);
    }
    let sources = w.partner.login_sources(&sshd_log);
    assert!(
        !sources.is_empty() && sources.iter().all(|s| *s == EIPS[1].to_string()),
        "failed over to NAT two: {sshd_log}"
    );

    // NAT one is back: failback, and a new invocation in subnet one leaves from EIP one. (A
    // connection opened through NAT two breaks when its route changes back: a fresh process.)
    w.testbed.nat_up(1).unwrap();
    stack.run(&["failback"]);
    assert_eq!(stack.sync_routes(&w.testbed), [1, 2]);
    let d3 = delivery(&aws, "az-one-back").await;
    let log3 = log_path("egress-az1-back");
    let f3 = Function::start(1, &d3.secret, &log3);
    let mut back = None;
    let sshd_log = partner_log_during(|| {
        back = Some(f3.invoke(&sqs_event(&[(
            "m-back".to_owned(),
            s3_body(&d3.bucket, &d3.key),
        )])))
    });
    assert_delivered(&back.unwrap(), &log3);
    assert_eq!(std::fs::read(d3.local_dir.join(&d3.key)).unwrap(), d3.body);
    assert_eq!(
        w.partner.login_sources(&sshd_log),
        [EIPS[0].to_string()],
        "failed back to NAT one: {sshd_log}"
    );
    for log in [&log1, &log2, &log3] {
        std::fs::remove_file(log).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_invocation_reports_each_subnets_eip_and_fails_loudly_on_a_mismatch() {
    let _serial = SERIAL.lock().await;
    let w = world();
    let aws = aws().await;
    let (_, remote) = w.partner.scratch_dir("egress-check");
    let secret = aws.secret(&w.partner.partner_json(&remote)).await;
    // The paths the provisioner writes into the function's environment (its HALVES, the EIPs).
    let paths = json!([
        {"az": "us-east-1a", "subnet": "private-one", "cidr": "10.0.0.32/28", "egress_ip": EIPS[0]},
        {"az": "us-east-1b", "subnet": "private-two", "cidr": "10.0.0.64/28", "egress_ip": EIPS[1]},
    ])
    .to_string();
    let check_paths = [("SFTP_FORWARD_CHECK_PATHS", paths.as_str())];
    for (subnet, eip, az) in [(1u8, EIPS[0], "us-east-1a"), (2, EIPS[1], "us-east-1b")] {
        let log = log_path("egress-check");
        let function = Function::start_env(subnet, &secret, &log, &EIPS, &check_paths);
        let answer = function.invoke(&json!({"check": true}));
        let fn_log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(answer.ok, "{answer:?}\n{fn_log}");
        let report: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(report["egress_ip"], eip.to_string(), "{report:#}");
        // Where it ran: the namespace's own address lies in its subnet, and it left through that
        // subnet's own NAT gateway; its EMF line counts it under that AZ.
        let name = format!("private-{}", ["one", "two"][usize::from(subnet) - 1]);
        assert_eq!(
            report["placement"],
            json!({"availability_zone": az, "subnet": name, "egress_path": name, "by": "local_address"}),
            "{report:#}"
        );
        assert!(
            fn_log.lines().any(|l| l.contains("\"CheckFailed\":0")
                && l.contains(&format!("\"AvailabilityZone\":\"{az}\""))),
            "{fn_log}"
        );
        assert_eq!(report["egress_match"], "matches", "{report:#}");
        assert_eq!(report["trusted"], true, "{report:#}");
        assert_eq!(report["login"], "ok", "{report:#}");
        assert_eq!(report["writable"], true, "{report:#}");
        std::fs::remove_file(&log).ok();
    }

    // Subnet one told to expect only NAT two's address (a stale allowlist, a wrong route): loud.
    let log = log_path("egress-check-mismatch");
    let function = Function::start_expecting(1, &secret, &log, &EIPS[1..]);
    let answer = function.invoke(&json!({"check": true}));
    assert!(
        !answer.ok,
        "a mismatch must fail the invocation: {answer:?}"
    );
    let error: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(error["errorType"], "SftpForward.CheckFailed", "{answer:?}");
    for ip in EIPS {
        assert!(
            answer.body.contains(&ip.to_string()),
            "the error names the IP seen and the one expected: {}",
            answer.body
        );
    }
    std::fs::remove_file(&log).ok();
}

/// iptables rules in the partner's namespace that drop every packet to and from NAT one's EIP:
/// a blackholed path (no reset, no ICMP). Removed when dropped.
struct Blackhole<'a>(&'a Testbed);

impl<'a> Blackhole<'a> {
    const RULES: [[&'static str; 5]; 2] = [
        ["INPUT", "-s", "203.0.113.10", "-j", "DROP"],
        ["OUTPUT", "-d", "203.0.113.10", "-j", "DROP"],
    ];

    fn on(testbed: &'a Testbed) -> Blackhole<'a> {
        assert_eq!(Self::RULES[0][2], EIPS[0].to_string());
        for rule in Self::RULES {
            let out = testbed
                .command("partner", "iptables")
                .args(["-w", "-I"])
                .args(rule)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Blackhole(testbed)
    }
}

impl Drop for Blackhole<'_> {
    fn drop(&mut self) {
        for rule in Self::RULES {
            let _ = self
                .0
                .command("partner", "iptables")
                .args(["-w", "-D"])
                .args(rule)
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_blackholed_mid_transfer_fails_within_the_request_bound_not_at_the_deadline() {
    let _serial = SERIAL.lock().await;
    let w = world();
    let aws = aws().await;
    let bucket = aws.bucket("blackhole").await;
    let key = "outbound/blackhole.bin";
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    aws.put(&bucket, key, &data).await;
    let (local, remote) = w.partner.scratch_dir("blackhole");
    let secret = aws.secret(&w.partner.partner_json(&remote)).await;
    let log = log_path("egress-blackhole");
    let function = Function::start_env(
        1,
        &secret,
        &log,
        &EIPS,
        &[
            ("SFTP_FORWARD_REQUEST_TIMEOUT_SECS", "3"),
            ("SFTP_FORWARD_MIN_TIME_LEFT_SECS", "5"),
        ],
    );
    let batch = sqs_event(&[("m-bh".to_owned(), s3_body(&bucket, key))]);
    let deadline = Duration::from_secs(60);

    // Once 1 MiB has reached the partner's disk, its firewall starts dropping NAT one's packets.
    let watch = testkit::Watch::start(&local, key, data.len() as u64);
    let (answer, cut_at, answered_at) = std::thread::scope(|scope| {
        let cut = scope.spawn(|| {
            assert!(
                watch.wait_for_temp_bytes(1 << 20, Duration::from_secs(60)),
                "the transfer never started"
            );
            (Blackhole::on(&w.testbed), std::time::Instant::now())
        });
        let text = batch.to_string();
        let answer = function
            .0
            .api
            .invoke(&text, deadline, deadline + Duration::from_secs(30));
        let answered_at = std::time::Instant::now();
        let (blackhole, cut_at) = cut.join().unwrap();
        drop(blackhole);
        (answer, cut_at, answered_at)
    });
    let fn_log = std::fs::read_to_string(&log).unwrap_or_default();
    let answer = answer.unwrap_or_else(|e| panic!("{e}\n{fn_log}"));
    let took = answered_at.duration_since(cut_at);
    assert!(answer.ok, "{answer:?}\n{fn_log}");
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(failures(&response), ["m-bh"], "{fn_log}");
    assert!(fn_log.contains("transient"), "{fn_log}");
    assert!(
        took < Duration::from_secs(20),
        "failed {took:?} after the path went dark: bounded by the 3 s request timeout, not the {deadline:?} deadline\n{fn_log}"
    );
    eprintln!("blackhole: failed {took:?} after the path went dark");

    // The path is back: SQS redelivers and the retry delivers the whole file.
    let retry = function.invoke(&batch);
    let response: Value = serde_json::from_str(&retry.body).unwrap();
    assert!(
        retry.ok && failures(&response).is_empty(),
        "{retry:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let seen = watch.stop();
    assert!(
        seen.partial.is_empty(),
        "partial file under the final name: {:?}",
        seen.partial
    );
    assert!(
        std::fs::read(local.join(key)).unwrap() == data,
        "bytes differ"
    );
    std::fs::remove_file(&log).ok();
}
