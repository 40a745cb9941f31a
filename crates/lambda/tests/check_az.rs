//! The scheduled self-check's AZ, through the compiled `bootstrap` over the Runtime API (as
//! EventBridge Scheduler's `{"check": true}` reaches it): the response says where the check ran,
//! and its EMF line carries `CheckFailed` per `FunctionName` and per `FunctionName` +
//! `AvailabilityZone` — what the provisioner's per-AZ alarms read — and `HostKeyUntrusted`.
//!
//! The echo server on loopback sees 127.0.0.1 and the check's connection comes from 127.0.0.1, so
//! the paths below put a "subnet" on 127.0.0.0/8 or an "Elastic IP" on 127.0.0.1. In Lambda the
//! sandbox's address is link-local (no subnet matches) and the Elastic IP decides; an alarm firing
//! on these metrics is exercised on real AWS only.

mod util;

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::{scratch_dir, EchoServer};
use util::*;

/// A valid ed25519 key that is not the server's.
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// The function's EMF lines with `metric`.
fn emf_lines(log: &str, metric: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["_aws"]["CloudWatchMetrics"].is_array() && l.get(metric).is_some())
        .collect()
}

/// The dimension sets the line publishes `metric` under.
fn dimension_sets(line: &Value, metric: &str) -> Vec<Value> {
    line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["Name"] == metric)
        })
        .flat_map(|d| d["Dimensions"].as_array().unwrap().clone())
        .collect()
}

fn paths(one_cidr: &str, two_egress: &str) -> String {
    json!([
        {"az": "us-east-1a", "subnet": "private-one", "cidr": one_cidr, "egress_ip": "203.0.113.10"},
        {"az": "us-east-1b", "subnet": "private-two", "cidr": "10.0.0.64/28", "egress_ip": two_egress},
    ])
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_check_says_its_az_and_counts_under_it() {
    let aws = aws().await;
    let (_local, remote) = scratch_dir("check-az");
    let good = aws.secret(&partner_json(&remote)).await;
    let echo = EchoServer::start(Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let check = json!({"check": true});

    // 1. The connection's local address lies in private-one's CIDR; the egress IP is private-two's
    //    Elastic IP (as after `failover --az one`): AZ one, left through nat-two's path.
    let in_subnet = paths("127.0.0.0/8", "127.0.0.1");
    let f = Bootstrap::start(
        &good,
        &[
            ("SFTP_FORWARD_EGRESS_ECHO_URL", url.as_str()),
            ("SFTP_FORWARD_CHECK_PATHS", in_subnet.as_str()),
        ],
    );
    let answer = f.invoke(&check, Duration::from_secs(60));
    assert!(answer.ok, "{answer:?}\n{}", f.log_text());
    let report: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        report["placement"],
        json!({"availability_zone": "us-east-1a", "subnet": "private-one",
               "egress_path": "private-two", "by": "local_address"}),
        "{report:#}"
    );
    assert_eq!(report["local_ip"], "127.0.0.1");
    let log = f.log_text();
    let lines = emf_lines(&log, "CheckFailed");
    assert_eq!(lines.len(), 1, "{log}");
    let line = &lines[0];
    assert_eq!(
        (
            &line["CheckFailed"],
            &line["HostKeyUntrusted"],
            &line["AvailabilityZone"],
            &line["FunctionName"],
        ),
        (
            &json!(0),
            &json!(0),
            &json!("us-east-1a"),
            &json!("sftp-forward")
        ),
        "{line:#}"
    );
    assert_eq!(
        dimension_sets(line, "CheckFailed"),
        [
            json!(["FunctionName"]),
            json!(["FunctionName", "AvailabilityZone"])
        ]
    );
    assert_eq!(
        dimension_sets(line, "HostKeyUntrusted"),
        [json!(["FunctionName"])]
    );
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SftpForward"
    );
    drop(f);

    // 2. No subnet matches (as inside Lambda), and the partner's host key is not pinned: the
    //    Elastic IP names AZ two, the check fails, both counts are 1.
    let mut partner = partner_json(&remote);
    partner["TrustedHostKeys"] = json!([OTHER_KEY]);
    let untrusted = aws.secret(&partner).await;
    let by_eip = paths("10.0.0.32/28", "127.0.0.1");
    let f = Bootstrap::start(
        &untrusted,
        &[
            ("SFTP_FORWARD_EGRESS_ECHO_URL", url.as_str()),
            ("SFTP_FORWARD_CHECK_PATHS", by_eip.as_str()),
        ],
    );
    let answer = f.invoke(&check, Duration::from_secs(60));
    assert!(!answer.ok, "{answer:?}");
    assert!(
        answer.body.contains("SftpForward.CheckFailed"),
        "{answer:?}"
    );
    // The console's errorMessage says where it ran.
    assert!(
        answer.body.contains("ran in AZ us-east-1b (by egress_ip)"),
        "{answer:?}"
    );
    let log = f.log_text();
    let lines = emf_lines(&log, "CheckFailed");
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(
        (
            &lines[0]["CheckFailed"],
            &lines[0]["HostKeyUntrusted"],
            &lines[0]["AvailabilityZone"]
        ),
        (&json!(1), &json!(1), &json!("us-east-1b")),
        "{log}"
    );
    let logged = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "egress self-check failed")
        .expect("the check's log line");
    assert_eq!(
        logged["check"]["placement"]["by"], "egress_ip",
        "{logged:#}"
    );
    drop(f);

    // 3. No paths at all: the AZ is unknown, and says why.
    let f = Bootstrap::start(&good, &[("SFTP_FORWARD_EGRESS_ECHO_URL", url.as_str())]);
    let answer = f.invoke(&check, Duration::from_secs(60));
    assert!(answer.ok, "{answer:?}\n{}", f.log_text());
    let report: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(report["placement"]["availability_zone"], Value::Null);
    assert_eq!(
        report["placement"]["paths_error"],
        "SFTP_FORWARD_CHECK_PATHS is not set"
    );
    let log = f.log_text();
    assert_eq!(
        emf_lines(&log, "CheckFailed")[0]["AvailabilityZone"],
        "unknown",
        "{log}"
    );
}

/// A record refused for an unpinned host key counts in the invocation's EMF line, per function:
/// the `host-key-untrusted` alarm hears of records, not only of checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_refused_for_an_untrusted_host_key_counts_under_the_function() {
    let aws = aws().await;
    let bucket = aws.bucket("check-az-record").await;
    aws.put(&bucket, "in/a.csv", b"a,b\n").await;
    let (local, remote) = scratch_dir("check-az-record");
    let mut partner = partner_json(&remote);
    partner["TrustedHostKeys"] = json!([OTHER_KEY]);
    let secret = aws.secret(&partner).await;
    let f = Bootstrap::start(&secret, &[]);
    let batch = sqs_event(&[("m-1".to_owned(), s3_body(&bucket, "in/a.csv"))]);
    let answer = f.invoke(&batch, Duration::from_secs(60));
    assert!(answer.ok, "{answer:?}\n{}", f.log_text());
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(failures(&response), ["m-1"]);
    assert!(!local.join("in/a.csv").exists(), "nothing may land");
    let log = f.log_text();
    let lines = emf_lines(&log, "FilesDelivered");
    assert_eq!(lines.len(), 1, "{log}");
    let line = &lines[0];
    assert_eq!(
        (
            &line["HostKeyUntrusted"],
            &line["FailuresPermanent"],
            &line["FunctionName"]
        ),
        (&json!(1), &json!(1), &json!("sftp-forward")),
        "{line:#}"
    );
    assert_eq!(
        dimension_sets(line, "FailuresPermanent"),
        [json!(["FunctionName"])]
    );
}

/// A check that cannot run (its secret is missing) still counts as a failed check, in an unknown
/// AZ: the failure alarm hears of it, not the "not running" one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_cannot_run_counts_as_failed() {
    aws().await;
    let f = Bootstrap::start("sftp-forward/no-such-secret", &[]);
    let answer = f.invoke(&json!({"check": true}), Duration::from_secs(60));
    assert!(
        !answer.ok && answer.body.contains("SftpForward.CheckFailed"),
        "{answer:?}"
    );
    let log = f.log_text();
    let lines = emf_lines(&log, "CheckFailed");
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(
        (&lines[0]["CheckFailed"], &lines[0]["AvailabilityZone"]),
        (&json!(1), &json!("unknown")),
        "{log}"
    );
}
