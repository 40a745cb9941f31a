//! The compiled `bootstrap` binary, driven over the Lambda Runtime API exactly as Lambda drives it,
//! with AWS on moto and the partner on the real sshd, configured only through its environment.

mod util;

use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{scratch_dir, Function, RuntimeApi};
use util::*;

/// Start `bootstrap` with JSON logs; its stdout and stderr go to `log`.
fn start_bootstrap(api: RuntimeApi, secret: &str, log: &std::path::Path) -> Function {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    cmd.env_clear().envs(lambda_env(&api.address(), secret));
    Function::spawn(cmd, api, log).expect("start bootstrap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_binary_forwards_a_mixed_sqs_batch_over_the_runtime_api() {
    let aws = aws().await;
    let bucket = aws.bucket("bootstrap").await;
    let (local, remote) = scratch_dir("bootstrap");
    let secret = aws.secret(&partner_json(&remote)).await;
    aws.put(&bucket, "reports/q4 final.csv", b"q4,numbers\n")
        .await;

    let api = RuntimeApi::start();
    let log = std::env::temp_dir().join(format!("{}.log", unique("bootstrap")));
    let function = start_bootstrap(api, &secret, &log);
    let batch = vec![
        (
            "m-good".to_owned(),
            s3_body(&bucket, "reports/q4 final.csv"),
        ),
        (
            "m-missing".to_owned(),
            s3_body(&bucket, "never-uploaded.csv"),
        ),
        ("m-traversal".to_owned(), s3_body(&bucket, "../outside.csv")),
    ];
    let payload = sqs_event(&batch).to_string();
    let api_ref = &function.api;
    let answer = tokio::task::block_in_place(|| {
        api_ref.invoke(&payload, Duration::from_secs(60), Duration::from_secs(60))
    })
    .expect("the function answers");
    assert!(answer.ok, "function error: {answer:?}");
    let response: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(failures(&response), ["m-traversal"]);
    assert_eq!(
        std::fs::read(local.join("reports/q4 final.csv")).unwrap(),
        b"q4,numbers\n"
    );
    let tags = aws.tags(&bucket, "reports/q4 final.csv").await;
    assert!(
        tags.iter().any(|(k, _)| k == "sftp-forward-delivered"),
        "{tags:?}"
    );

    // Warm invocation, same process: the duplicate is skipped.
    let again = tokio::task::block_in_place(|| {
        api_ref.invoke(
            &sqs_event(&batch[..1]).to_string(),
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    })
    .unwrap();
    assert!(
        again.ok && failures(&serde_json::from_str(&again.body).unwrap()).is_empty(),
        "{again:?}"
    );

    // An event the function does not understand is an invocation error, not a crash.
    let odd = tokio::task::block_in_place(|| {
        api_ref.invoke(
            "{\"hello\": 1}",
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    })
    .unwrap();
    assert!(
        !odd.ok && odd.body.contains("unrecognised event"),
        "{odd:?}"
    );
    assert!(
        odd.body.contains("SftpForward.UnrecognisedEvent"),
        "{odd:?}"
    );

    // Logs are JSON lines (AWS_LAMBDA_LOG_FORMAT=JSON), one outcome per record, no key material.
    drop(function);
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).ok();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let outcomes: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["outcome"].as_str().or(l["outcome"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        ["delivered", "skipped", "failed", "skipped"],
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l["FilesDelivered"] == 1),
        "an EMF metrics line: {text}"
    );
    assert!(
        !lines.iter().any(|l| l.get("Partner").is_some()),
        "a single partner without a prefix adds no per-partner metrics: {text}"
    );
    let key_line = testkit::sshd()
        .keys
        .ed25519
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        !text.contains(&key_line),
        "private key material in the logs"
    );
}

#[test]
fn the_bootstrap_binary_reports_a_missing_setting_at_init() {
    let api = RuntimeApi::start();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "sftp-forward")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SFTP_FORWARD_SECRET_ID"), "{stderr}");
}
