//! No secret leaks: scenarios run with known secret values (password, encrypted private key and
//! its passphrase, a wrong password, garbage key material) through the compiled `bootstrap` and
//! the handler, and every captured log line, response, error message and `Debug` output is
//! scanned for those values and for each base64 line of the private keys: 0 occurrences.

mod util;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::{scratch_dir, sshd};
use util::*;

/// A valid host key that is not the test server's (from the example partner config).
const OTHER_HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
const WRONG_PASSWORD: &str = "Wr0ng-pa55w0rd-never-print-me";
const GARBAGE_KEY_LINE: &str = "R2FyYmFnZUtleU1hdGVyaWFsTmV2ZXJQcmludE1lUGxlYXNlMTIzNDU2Nzg5";

/// The partner secret in each scenario, with what the function must answer.
fn scenarios(remote: &str) -> Vec<(&'static str, Value)> {
    let s = sshd();
    let mut good = partner_json(remote);
    good["PrivateKey"] = json!(s.keys.ed25519_encrypted);
    good["PrivateKeyPassphrase"] = json!(s.keys.passphrase);
    good["Password"] = json!(s.password);
    let mut bad_password = good.clone();
    let o = bad_password.as_object_mut().unwrap();
    o.remove("PrivateKey");
    o.remove("PrivateKeyPassphrase");
    bad_password["Password"] = json!(WRONG_PASSWORD);
    let mut untrusted = good.clone();
    untrusted["TrustedHostKeys"] = json!([OTHER_HOST_KEY]);
    let mut garbage = good.clone();
    garbage["PrivateKey"] = json!(format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{GARBAGE_KEY_LINE}\n{GARBAGE_KEY_LINE}\n-----END OPENSSH PRIVATE KEY-----\n"
    ));
    garbage
        .as_object_mut()
        .unwrap()
        .remove("PrivateKeyPassphrase");
    vec![
        ("delivered", good),
        ("rejected", bad_password),
        ("not trusted", untrusted),
        ("PrivateKey", garbage),
    ]
}

/// Every value that must never be printed, with a name for the failure message.
fn secret_values() -> Vec<(String, String)> {
    let s = sshd();
    let mut values = vec![
        ("password".to_owned(), s.password.clone()),
        ("wrong password".to_owned(), WRONG_PASSWORD.to_owned()),
        ("passphrase".to_owned(), s.keys.passphrase.clone()),
        ("garbage key".to_owned(), GARBAGE_KEY_LINE.to_owned()),
    ];
    for (name, key) in [
        ("encrypted key", &s.keys.ed25519_encrypted),
        ("key", &s.keys.ed25519),
    ] {
        for (i, line) in key.lines().enumerate() {
            if !line.starts_with("-----") && line.len() >= 16 {
                values.push((format!("{name} line {i}"), line.to_owned()));
            }
        }
    }
    values
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.is_empty(), "{what}: nothing captured");
    for (name, value) in secret_values() {
        assert_eq!(
            text.matches(value.as_str()).count(),
            0,
            "the {name} appears in the {what}:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_reaches_a_log_line_a_response_or_an_error() {
    let aws = aws().await;
    let bucket = aws.bucket("secrets").await;
    let (local, remote) = scratch_dir("secrets");
    let cases = scenarios(&remote);
    let secret = aws.secret(&cases[0].1).await;
    // Read the secret on every invocation, so each scenario's version is the one used.
    let function = Bootstrap::start(&secret, &[("SFTP_FORWARD_SECRET_TTL_SECS", "0")]);
    let mut handler = aws.forwarder(&secret, &[("SFTP_FORWARD_SECRET_TTL_SECS", "0")]);
    let mut captured = String::new();
    for (i, (expect, partner)) in cases.iter().enumerate() {
        aws.set_secret(&secret, partner).await;
        for (via, n) in [("bootstrap", 0), ("handler", 1)] {
            let key = format!("{expect} {i} {n}.csv");
            aws.put(&bucket, &key, b"payload").await;
            let event: Value = serde_json::from_str(&s3_body(&bucket, &key)).unwrap();
            let (ok, text) = if via == "bootstrap" {
                let answer = function.invoke(&event, Duration::from_secs(60));
                let check = function.invoke(&json!({"check": true}), Duration::from_secs(60));
                captured.push_str(&check.body);
                (answer.ok, answer.body)
            } else {
                let result = handler.handle(&event, None).await;
                let check = handler.check().await;
                captured.push_str(&format!("{check:?}\n"));
                if let Err(e) = &check {
                    captured.push_str(&format!("{e}\n"));
                }
                match result {
                    Ok(v) => (true, v.to_string()),
                    Err(e) => (false, format!("{e}\n{e:?}\n{}", e.error_type())),
                }
            };
            assert_eq!(ok, *expect == "delivered", "{via} {expect}: {text}");
            assert!(text.contains(expect), "{via} {expect}: {text}");
            captured.push_str(&text);
            captured.push('\n');
        }
    }
    assert_eq!(
        testkit::watch::files(&local).len(),
        2,
        "the good secret delivered"
    );
    drop(handler);
    let log = function.log_text();
    assert!(
        log.contains("\"outcome\":\"failed\"") && log.contains("egress self-check"),
        "the log holds the scenarios: {log}"
    );
    assert_no_secret("bootstrap log", &log);
    assert_no_secret("responses and errors", &captured);
}
