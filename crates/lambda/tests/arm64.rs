//! The arm64 (Graviton) `bootstrap` from `deploy/package --arch arm64`, run under qemu-user on
//! this x86_64 machine against the test Runtime API, moto and the real sshd: it starts, answers
//! the check invocation and forwards one object byte-exact. Ignored by default (the cross build
//! takes minutes): `tests/arm64-smoke` builds the zip and runs it with
//! `SFTP_FORWARD_ARM64_BOOTSTRAP` set to the unpacked binary.

mod util;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{scratch_dir, EchoServer, Function, RuntimeApi};
use util::*;

/// The aarch64 binary to run; set by `tests/arm64-smoke`.
const BINARY_ENV: &str = "SFTP_FORWARD_ARM64_BOOTSTRAP";
/// Debian's qemu-user-static and the aarch64 glibc of `libc6-arm64-cross` (the dynamic loader and
/// libc the binary links to, as Lambda's provided.al2023 has them).
const QEMU: &str = "/usr/bin/qemu-aarch64-static";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the arm64 zip and qemu: run tests/arm64-smoke"]
async fn the_arm64_bootstrap_answers_the_check_and_forwards_an_object_under_qemu() {
    let bin = std::env::var(BINARY_ENV).unwrap_or_else(|_| {
        panic!("{BINARY_ENV} must name the aarch64 bootstrap (tests/arm64-smoke sets it)")
    });
    let aws = aws().await;
    let bucket = aws.bucket("arm64").await;
    let (local, remote) = scratch_dir("arm64");
    let secret = aws.secret(&partner_json(&remote)).await;
    let body = noise(3 * 1024 * 1024 + 17);
    aws.put(&bucket, "arm64/one.bin", &body).await;
    let echo = EchoServer::start(Ipv4Addr::LOCALHOST);

    let api = RuntimeApi::start();
    let log = std::env::temp_dir().join(format!("{}.log", unique("arm64")));
    let mut cmd = Command::new(QEMU);
    cmd.args(["-L", SYSROOT, &bin])
        .env_clear()
        .envs(lambda_env(&api.address(), &secret))
        .env("SFTP_FORWARD_EGRESS_ECHO_URL", echo.url())
        .env("SFTP_FORWARD_EXPECTED_EGRESS_IPS", "127.0.0.1");
    let started = Instant::now();
    let function = Function::spawn(cmd, api, &log).expect("start qemu-aarch64-static");
    let invoke = |payload: &Value| {
        let text = payload.to_string();
        tokio::task::block_in_place(|| {
            function
                .api
                .invoke(&text, Duration::from_secs(60), Duration::from_secs(90))
        })
        .unwrap_or_else(|e| panic!("{e}\nfunction log:\n{}", function.log_text()))
    };

    let check = invoke(&json!({"check": true}));
    let first_answer = started.elapsed();
    assert!(check.ok, "{check:?}\n{}", function.log_text());
    let report: Value = serde_json::from_str(&check.body).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["login"], "ok", "{report:#}");
    assert_eq!(report["writable"], true, "{report:#}");
    assert_eq!(report["egress_match"], "matches", "{report:#}");

    let forwarded = Instant::now();
    let batch = [("m-arm64".to_owned(), s3_body(&bucket, "arm64/one.bin"))];
    let answer = invoke(&sqs_event(&batch));
    let response: Value = serde_json::from_str(&answer.body).unwrap_or_default();
    assert!(
        answer.ok && failures(&response).is_empty(),
        "{answer:?}\n{}",
        function.log_text()
    );
    assert!(
        std::fs::read(local.join("arm64/one.bin")).unwrap() == body,
        "the partner's file differs from the object"
    );
    println!(
        "arm64 bootstrap under qemu: start + check answered in {:.2} s, {} byte object \
         forwarded in {:.2} s (emulated: says it works, not how fast)",
        first_answer.as_secs_f64(),
        body.len(),
        forwarded.elapsed().as_secs_f64()
    );
    drop(function);
    std::fs::remove_file(&log).ok();
}
