//! Shared by the CLI tests: the compiled `sftp-forward` run as a subprocess with moto's standard
//! AWS environment, AWS clients for setting up buckets, secrets and queues, and the partner JSON
//! for the test sshd.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
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

    /// The summary table's row for `item` (an `s3://` URL), from stdout.
    pub fn row(&self, item: &str) -> &str {
        let padded = format!(" {item} ");
        self.stdout
            .lines()
            .find(|l| l.contains(&padded))
            .unwrap_or_else(|| panic!("no row for {item}: {self:#?}"))
    }

    /// The lines a terminal showed for a [`sftp_forward_tty`] run: see [`screen_lines`].
    pub fn screen(&self) -> Vec<String> {
        screen_lines(&self.stdout)
    }

    /// Whether the terminal showed a line for which `pred` holds.
    pub fn showed(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.screen().iter().any(|l| pred(l))
    }
}

/// Run `sftp-forward ARGS` with moto's environment (endpoint, region, credentials) and nothing
/// else: no flag names an endpoint. Bounded to two minutes.
pub async fn sftp_forward(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sftp-forward"));
    cmd.args(args).envs(moto().env()).kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null());
    let run = run_bounded(cmd, &format!("sftp-forward {args:?}")).await;
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

/// Run `sftp-forward ARGS` as an operator at a terminal does: its stdout and stderr are a
/// pseudo-terminal (util-linux `script`), with `TERM` as given. Returns the terminal transcript
/// (both streams, control sequences included) in `stdout`. Bounded to two minutes.
pub async fn sftp_forward_tty(args: &[&str], term: &str) -> Run {
    let line = std::iter::once(env!("CARGO_BIN_EXE_sftp-forward"))
        .chain(args.iter().copied())
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = tokio::process::Command::new("script");
    cmd.args([
        "--quiet",
        "--return",
        "--flush",
        "--command",
        &line,
        "/dev/null",
    ])
    .envs(moto().env())
    .env("TERM", term)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    run_bounded(cmd, &format!("script {line:?}")).await
}

/// Runs `cmd` to completion (two minutes at most) and checks its output holds no key material.
async fn run_bounded(mut cmd: tokio::process::Command, what: &str) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 2 minutes"))
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_key_material(&run);
    run
}

/// Secrets are never printed: no line of the partner's private key (every test secret holds the
/// test sshd's client key) appears in anything a run printed.
fn assert_no_key_material(run: &Run) {
    for line in sshd()
        .keys
        .ed25519
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(
            !run.stdout.contains(line) && !run.stderr.contains(line),
            "a line of the private key was printed: {run:#?}"
        );
    }
}

/// `s` as one word for `sh -c`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The lines a terminal showed, in order: the transcript split at carriage returns and line
/// feeds, with ANSI control sequences (cursor moves, line clears) removed.
pub fn screen_lines(transcript: &str) -> Vec<String> {
    let mut plain = String::new();
    let mut chars = transcript.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            plain.push(c);
            continue;
        }
        // ESC [ parameters final-byte (CSI), or ESC and one more character.
        if chars.next_if_eq(&'[').is_some() {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    plain
        .split(['\r', '\n'])
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

// AWS clients on moto, buckets, secrets, the partner JSON and S3 notification bodies: the same
// helpers the Lambda tests use, not a copy of them.
#[path = "../../../lambda/tests/util/mod.rs"]
mod shared;
#[allow(unused_imports)] // each test binary uses its own subset
pub use shared::{aws, left_in, partner_json, s3_body, Aws};
pub mod stack;

/// What a test that moves objects needs: AWS clients, a fresh bucket, a fresh directory on the
/// partner (on this machine's disk, and as the secret names it) and a secret for it:
/// `(aws, bucket, local, remote, secret)`.
pub async fn setup(hint: &str) -> (Aws, String, std::path::PathBuf, String, String) {
    let aws = aws().await;
    let bucket = aws.bucket(hint).await;
    let (local, remote) = testkit::scratch_dir(hint);
    let secret = aws.secret(&partner_json(&remote)).await;
    (aws, bucket, local, remote, secret)
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

/// Queue helpers only the CLI tests need (the dead-letter queue `redrive` reads).
pub trait DlqExt {
    async fn queue_with(&self, bodies: &[String]) -> String;
    async fn bodies(&self, url: &str) -> Vec<String>;
}

impl DlqExt for Aws {
    /// A queue holding these message bodies; returns its URL.
    async fn queue_with(&self, bodies: &[String]) -> String {
        let url = self.queue("dlq").await;
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
    async fn bodies(&self, url: &str) -> Vec<String> {
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
