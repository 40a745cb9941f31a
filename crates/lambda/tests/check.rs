//! The `{"check": true}` invocation on real parts: the partner secret in Secrets Manager (moto),
//! the partner a real sshd, the egress IP from a real HTTP echo server on loopback (so the IP it
//! sees is 127.0.0.1).

mod util;

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use sftp_forward_core::check::CheckFailed;
use sftp_forward_core::HandlerError;
use testkit::{scratch_dir, sshd, EchoServer};
use util::*;

/// A valid ed25519 key that is not the server's.
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// The check invocation's result: the response, or the invocation error's type and message.
async fn invoke_check(secret: &str, env: &[(&str, &str)]) -> Result<Value, (String, String)> {
    let mut f = util::aws().await.forwarder(secret, env);
    f.handle(&json!({"check": true}), None)
        .await
        .map_err(|e| (e.error_type().to_owned(), e.to_string()))
}

/// The private key body of the test partner: never in a response, error or log.
fn key_body() -> String {
    sshd().keys.ed25519.lines().nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn an_expected_egress_ip_and_a_writable_partner_answer_the_report() {
    let aws = aws().await;
    let (local, remote) = scratch_dir("check-ok");
    let secret = aws.secret(&partner_json(&remote)).await;
    let echo = EchoServer::start(Ipv4Addr::LOCALHOST);
    let env = [
        ("SFTP_FORWARD_EGRESS_ECHO_URL", echo.url()),
        (
            "SFTP_FORWARD_EXPECTED_EGRESS_IPS",
            "203.0.113.10, 127.0.0.1".into(),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let report = invoke_check(&secret, &env).await.expect("the check passes");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["egress_ip"], "127.0.0.1", "{report:#}");
    assert_eq!(report["egress_match"], "matches", "{report:#}");
    assert_eq!(
        report["expected_egress_ips"],
        json!(["203.0.113.10", "127.0.0.1"])
    );
    assert_eq!(report["trusted"], true, "{report:#}");
    assert_eq!(report["login"], "ok", "{report:#}");
    assert_eq!(report["writable"], true, "{report:#}");
    assert_eq!(report["fingerprint"], sshd().host_key_fingerprint());
    assert_eq!(report["remote_directory"], remote);
    assert_eq!(report["problems"], json!([]));
    assert!(!report.to_string().contains(&key_body()));
    assert_eq!(echo.served(), 1, "the echo service was asked once");
    assert!(
        std::fs::read_dir(&local).unwrap().next().is_none(),
        "the write probe is removed"
    );

    // No expected IPs: the egress IP is reported, not compared, and that is not a failure.
    let env = [("SFTP_FORWARD_EGRESS_ECHO_URL", echo.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let report = invoke_check(&secret, &env).await.expect("the check passes");
    assert_eq!(report["egress_ip"], "127.0.0.1", "{report:#}");
    assert_eq!(report["egress_match"], "not_compared", "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
}

#[tokio::test]
async fn an_unexpected_egress_ip_fails_the_invocation_naming_both_ips() {
    let aws = aws().await;
    let (_local, remote) = scratch_dir("check-mismatch");
    let secret = aws.secret(&partner_json(&remote)).await;
    let echo = EchoServer::start(Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let env = [
        ("SFTP_FORWARD_EGRESS_ECHO_URL", url.as_str()),
        ("SFTP_FORWARD_EXPECTED_EGRESS_IPS", "203.0.113.10"),
    ];

    let (error_type, message) = invoke_check(&secret, &env).await.unwrap_err();
    assert_eq!(error_type, "SftpForward.CheckFailed");
    assert!(
        message.contains("127.0.0.1") && message.contains("203.0.113.10"),
        "{message}"
    );
    assert!(
        message.contains(&sshd().host_key_fingerprint()),
        "{message}"
    );
    assert!(!message.contains(&key_body()), "{message}");

    // The partner side is still checked and reported.
    let f = aws.forwarder(&secret, &env);
    let Err(CheckFailed::Problems(report)) = f.check().await else {
        panic!("a failed check with a report")
    };
    assert!(report.connection.trusted && report.connection.writable == Some(true));
    assert_eq!(report.problems.len(), 1, "{report:#?}");
}

#[tokio::test]
async fn an_unreachable_echo_service_fails_the_invocation_naming_its_url() {
    let aws = aws().await;
    let (_local, remote) = scratch_dir("check-noecho");
    let secret = aws.secret(&partner_json(&remote)).await;
    let url = testkit::echo::closed_url();
    let env = [
        ("SFTP_FORWARD_EGRESS_ECHO_URL", url.as_str()),
        ("SFTP_FORWARD_EXPECTED_EGRESS_IPS", "127.0.0.1"),
    ];

    let (error_type, message) = invoke_check(&secret, &env).await.unwrap_err();
    assert_eq!(error_type, "SftpForward.CheckFailed");
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("egress IP seen: unknown"), "{message}");
}

#[tokio::test]
async fn an_untrusted_host_key_fails_the_check_without_logging_in() {
    let aws = aws().await;
    let (_local, remote) = scratch_dir("check-untrusted");
    let mut partner = partner_json(&remote);
    partner["TrustedHostKeys"] = json!([OTHER_KEY]);
    let secret = aws.secret(&partner).await;
    let echo = EchoServer::start(Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let env = [
        ("SFTP_FORWARD_EGRESS_ECHO_URL", url.as_str()),
        ("SFTP_FORWARD_EXPECTED_EGRESS_IPS", "127.0.0.1"),
    ];

    let (error_type, message) = invoke_check(&secret, &env).await.unwrap_err();
    assert_eq!(error_type, "SftpForward.CheckFailed");
    assert!(message.contains("TrustedHostKeys"), "{message}");
    assert!(
        message.contains(&sshd().host_key_fingerprint()),
        "{message}"
    );

    let f = aws.forwarder(&secret, &env);
    let Err(CheckFailed::Problems(report)) = f.check().await else {
        panic!("a failed check with a report")
    };
    let doc = serde_json::to_value(&report).unwrap();
    assert_eq!(doc["trusted"], false, "{doc:#}");
    assert_eq!(doc["login"], "skipped", "{doc:#}");
    assert_eq!(doc["writable"], Value::Null, "{doc:#}");
    assert_eq!(doc["egress_match"], "matches", "{doc:#}");
    assert_eq!(doc["problems"][0]["kind"], "untrusted_host_key", "{doc:#}");
}

#[tokio::test]
async fn a_missing_secret_fails_the_check_before_connecting() {
    let err = aws()
        .await
        .forwarder("no-such-secret", &[])
        .handle(&json!({"check": true}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::Check(CheckFailed::Secret(_))),
        "{err}"
    );
    assert_eq!(err.error_type(), "SftpForward.CheckFailed");
    assert!(err.to_string().contains("no-such-secret"), "{err}");
}
