//! Shared by the CLI tests: the compiled `sftp-forward` run as a subprocess with moto's standard
//! AWS environment, AWS clients for setting up buckets, secrets and queues, and the partner JSON
//! for the test sshd.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};
use testkit::{moto, sshd};

/// What a run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout parsed as the `--json` document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Run `sftp-forward ARGS` with moto's environment (endpoint, region, credentials) and nothing
/// else: no flag names an endpoint. Bounded to two minutes.
pub async fn sftp_forward(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sftp-forward"));
    cmd.args(args).envs(moto().env()).kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("sftp-forward {args:?} did not finish within 2 minutes"))
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // `SFTP_FORWARD_TEST_ECHO=1 cargo test -p cli -- --nocapture` shows every run, for debugging.
    if std::env::var_os("SFTP_FORWARD_TEST_ECHO").is_some() {
        eprintln!(
            "$ sftp-forward {}\n{}{}exit {}\n",
            args.join(" "),
            run.stdout,
            run.stderr,
            run.code
        );
    }
    run
}

/// A name unique within this process and across runs.
pub fn unique(hint: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{hint}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The partner JSON for the test sshd, publishing under `remote_dir`.
pub fn partner_json(remote_dir: &str) -> Value {
    sshd().partner_json(remote_dir)
}

/// `value` written to a file in a fresh temporary directory (kept alive by the returned guard).
pub fn secret_file(value: &Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partner.json");
    std::fs::write(&path, value.to_string()).unwrap();
    (dir, path.display().to_string())
}

/// The second field of `ssh-keygen -lf` of the server's public host key: `SHA256:...`.
pub fn keygen_fingerprint() -> String {
    sshd().host_key_fingerprint()
}

pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// Clients on the moto server, configured only through standard settings.
pub async fn aws() -> Aws {
    let m = moto();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&m.endpoint)
        .region(aws_config::Region::new(testkit::moto::REGION))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            testkit::moto::ACCESS_KEY_ID,
            testkit::moto::SECRET_ACCESS_KEY,
            None,
            None,
            "testkit",
        ))
        .load()
        .await;
    Aws {
        s3: sftp_forward_lambda::source::S3Store::client(&config),
        secrets: aws_sdk_secretsmanager::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
    }
}

impl Aws {
    pub async fn bucket(&self, hint: &str) -> String {
        let name = unique(hint).to_lowercase();
        self.s3.create_bucket().bucket(&name).send().await.unwrap();
        name
    }

    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .unwrap();
    }

    /// A Secrets Manager secret holding `value`; returns its name.
    pub async fn secret(&self, value: &Value) -> String {
        let name = unique("partner");
        self.secrets
            .create_secret()
            .name(&name)
            .secret_string(value.to_string())
            .send()
            .await
            .unwrap();
        name
    }

    /// A queue holding these message bodies; returns its URL.
    pub async fn queue_with(&self, bodies: &[String]) -> String {
        let url = self
            .sqs
            .create_queue()
            .queue_name(unique("dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        for body in bodies {
            self.sqs
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await
                .unwrap();
        }
        url
    }

    /// Every message body now in the queue (received and made visible again at once).
    pub async fn bodies(&self, url: &str) -> Vec<String> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| m.body().unwrap_or_default().to_owned())
            .collect()
    }
}

/// An S3 notification body for one object, form-encoding the key as S3 does.
pub fn s3_body(bucket: &str, key: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_owned(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-25T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": encoded, "size": 1}}
    }]})
    .to_string()
}
