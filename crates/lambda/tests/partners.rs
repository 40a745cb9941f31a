//! Several partners on one function (issue 16): the `bootstrap` binary with
//! `SFTP_FORWARD_PARTNERS`, two real sshd's on their own ports, records routed by key prefix.

mod util;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::Style;
use util::{aws, failures, s3_body, sqs_event, unique, Bootstrap};

/// The function's EMF lines (CloudWatch metrics) in its log.
fn emf_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["_aws"]["CloudWatchMetrics"].is_array())
        .collect()
}

/// The sum of `metric` over the EMF lines with exactly this `Partner` (`None`: the function's
/// own lines, which have no `Partner`).
fn metric(lines: &[Value], partner: Option<&str>, metric: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l["Partner"].as_str() == partner)
        .filter_map(|l| l[metric].as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_partner_gets_only_its_prefix_over_its_own_port_and_a_stray_key_is_kept_and_counted() {
    // Two partners, each its own sshd (own port, own user, own keys, own log).
    let (acme, bank) = std::thread::scope(|s| {
        let a = s.spawn(|| testkit::sshd_styled(&Style::new()));
        let b = s.spawn(|| testkit::sshd_styled(&Style::new()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (acme, bank) = (
        acme.unwrap_or_else(|e| panic!("{e}")),
        bank.unwrap_or_else(|e| panic!("{e}")),
    );
    assert_ne!(acme.port, bank.port);
    let aws = aws().await;
    let bucket = aws.bucket("partners").await;
    let (acme_dir, acme_remote) = acme.scratch_dir("acme");
    let (bank_dir, bank_remote) = bank.scratch_dir("bank");
    let acme_secret = aws.secret(&acme.partner_json(&acme_remote)).await;
    let bank_secret = aws.secret(&bank.partner_json(&bank_remote)).await;
    let partners = json!([
        {"name": "acme", "prefix": "acme/", "secret_id": acme_secret},
        {"name": "bank", "prefix": "bank/", "secret_id": bank_secret,
         "remote_path_template": "in/{basename}"},
    ]);

    let objects: [(&str, &[u8]); 4] = [
        ("acme/a.csv", b"for acme"),
        ("acme/sub/b.csv", b"also for acme"),
        ("bank/deep/x.csv", b"for the bank"),
        ("stray/z.csv", b"nobody's"),
    ];
    for (key, body) in objects {
        aws.put(&bucket, key, body).await;
    }
    let messages: Vec<(String, String)> = objects
        .iter()
        .map(|(key, _)| (format!("m-{key}"), s3_body(&bucket, key)))
        .collect();
    let function = Bootstrap::partners(&partners, &[]);
    let answer = function.invoke(&sqs_event(&messages), Duration::from_secs(60));
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    let log = function.log_text();
    assert_eq!(
        failures(&response),
        ["m-stray/z.csv"],
        "only the stray key fails (kept for the DLQ): {log}"
    );

    // Each partner has exactly its own files, the prefix stripped, under its own route.
    assert_eq!(util::left_in(&acme_dir), ["a.csv", "sub/b.csv"], "{log}");
    assert_eq!(
        std::fs::read(acme_dir.join("sub/b.csv")).unwrap(),
        b"also for acme"
    );
    assert_eq!(util::left_in(&bank_dir), ["in/x.csv"], "{log}");
    assert_eq!(
        std::fs::read(bank_dir.join("in/x.csv")).unwrap(),
        b"for the bank"
    );
    let outcomes = util::outcomes(&log);
    assert!(
        outcomes.iter().any(|(o, class, reason)| o == "failed"
            && class == "permanent"
            && reason.contains("no partner's prefix matches key \"stray/z.csv\"")),
        "{outcomes:?}"
    );

    // Metrics: the stray key counted as Unrouted; each partner's deliveries under its name.
    let lines = emf_lines(&log);
    assert_eq!(metric(&lines, None, "Unrouted"), 1, "{lines:?}");
    assert_eq!(metric(&lines, None, "FilesDelivered"), 3, "{lines:?}");
    assert_eq!(metric(&lines, Some("acme"), "FilesDelivered"), 2);
    assert_eq!(metric(&lines, Some("bank"), "FilesDelivered"), 1);
    assert_eq!(metric(&lines, Some("bank"), "BytesDelivered"), 12);
    let partner_line = lines.iter().find(|l| l["Partner"] == "acme").unwrap();
    assert_eq!(
        partner_line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["FunctionName", "Partner"]])
    );

    // A warm second invocation reuses each partner's connection: one login per sshd in all.
    let more = [("acme/c.csv", b"third" as &[u8]), ("bank/y.csv", b"fourth")];
    for (key, body) in more {
        aws.put(&bucket, key, body).await;
    }
    let messages: Vec<(String, String)> = more
        .iter()
        .map(|(key, _)| (unique("m"), s3_body(&bucket, key)))
        .collect();
    function.invoke_all_ok(&sqs_event(&messages), Duration::from_secs(60));
    assert_eq!(std::fs::read(acme_dir.join("c.csv")).unwrap(), b"third");
    assert_eq!(std::fs::read(bank_dir.join("in/y.csv")).unwrap(), b"fourth");
    assert_eq!(acme.logins(&acme.log()).len(), 1, "{}", acme.log());
    assert_eq!(bank.logins(&bank.log()).len(), 1, "{}", bank.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_self_check_covers_every_partner_and_names_the_one_that_fails() {
    let aws = aws().await;
    let partner = testkit::sshd();
    let (_, remote) = partner.scratch_dir("check-ok");
    let good = aws.secret(&partner.partner_json(&remote)).await;
    let mut wrong_key = partner.partner_json(&remote);
    wrong_key["TrustedHostKeys"] =
        json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]);
    let bad = aws.secret(&wrong_key).await;
    let partners = json!([
        {"name": "good", "prefix": "good/", "secret_id": good},
        {"name": "pinned-wrong", "prefix": "bad/", "secret_id": bad},
    ]);
    // The egress IP from an echo server on loopback, as expected: the host key is what differs.
    let echo = testkit::echo::EchoServer::start(std::net::Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let env = [
        (sftp_forward_core::env::EGRESS_ECHO_URL, url.as_str()),
        (sftp_forward_core::env::EXPECTED_EGRESS_IPS, "127.0.0.1"),
    ];
    let function = Bootstrap::partners(&partners, &env);
    let answer = function.invoke(&json!({"check": true}), Duration::from_secs(60));
    assert!(!answer.ok, "one partner's check failed: {answer:?}");
    assert!(
        answer.body.contains("pinned-wrong") && !answer.body.contains("good:"),
        "the failure names the failing partner only: {}",
        answer.body
    );
    let log = function.log_text();
    let reports: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["check"].is_object())
        .collect();
    let names: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["partner"].as_str())
        .collect();
    assert!(
        names.contains(&"good") && names.contains(&"pinned-wrong"),
        "{log}"
    );
    let good = reports.iter().find(|r| r["partner"] == "good").unwrap();
    assert_eq!(good["check"]["ok"], true, "{good}");
    assert_eq!(good["check"]["egress_match"], "matches", "{good}");
    assert_eq!(
        echo.served(),
        2,
        "each partner's check asked for the egress IP"
    );

    // Pinned right, both pass: the response lists each partner's report under its name.
    aws.set_secret(&bad, &partner.partner_json(&remote)).await;
    let answer = function.invoke(&json!({"check": true}), Duration::from_secs(60));
    assert!(answer.ok, "{answer:?}");
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    let listed: Vec<(&str, bool)> = response["partners"]
        .as_array()
        .unwrap_or_else(|| panic!("{response}"))
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["ok"] == true))
        .collect();
    assert_eq!(
        listed,
        [("good", true), ("pinned-wrong", true)],
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_that_hangs_does_not_hold_up_the_others_records() {
    let aws = aws().await;
    let bucket = aws.bucket("hang").await;
    let partner = testkit::sshd();
    let (local, remote) = partner.scratch_dir("unhindered");
    let good = aws.secret(&partner.partner_json(&remote)).await;
    // A partner whose server accepts TCP connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut hung = partner.partner_json(&remote);
    hung["Port"] = json!(silent.local_addr().unwrap().port());
    let hung = aws.secret(&hung).await;
    let partners = json!([
        {"name": "hung", "prefix": "hung/", "secret_id": hung},
        {"name": "fine", "prefix": "fine/", "secret_id": good},
    ]);
    aws.put(&bucket, "hung/h.csv", b"waits").await;
    aws.put(&bucket, "fine/f.csv", b"goes through").await;
    let messages = vec![
        ("m-hung".to_owned(), s3_body(&bucket, "hung/h.csv")),
        ("m-fine".to_owned(), s3_body(&bucket, "fine/f.csv")),
    ];
    let env = [
        (sftp_forward_core::env::MIN_TIME_LEFT_SECS, "1"),
        (sftp_forward_core::env::CONNECT_TIMEOUT_SECS, "30"),
    ];
    let function = Bootstrap::partners(&partners, &env);
    let started = std::time::Instant::now();
    let answer = function.invoke(&sqs_event(&messages), Duration::from_secs(8));
    let response: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(failures(&response), ["m-hung"], "{}", function.log_text());
    assert_eq!(
        std::fs::read(local.join("f.csv")).unwrap(),
        b"goes through",
        "the other partner's record was delivered while the hung one waited"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered within the deadline"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_partner_s_control_file_lists_only_its_own_files() {
    let aws = aws().await;
    let bucket = aws.bucket("ctl").await;
    let partner = testkit::sshd();
    let with_control = |remote: &str| {
        let mut p = partner.partner_json(remote);
        p["ControlFile"] = json!("batch-{now:%Y%m%d%H%M%S%3f}.ctl");
        p
    };
    let (a_dir, a_remote) = partner.scratch_dir("ctl-a");
    let (b_dir, b_remote) = partner.scratch_dir("ctl-b");
    let a = aws.secret(&with_control(&a_remote)).await;
    let b = aws.secret(&with_control(&b_remote)).await;
    let partners = json!([
        {"name": "a", "prefix": "a/", "secret_id": a},
        {"name": "b", "prefix": "b/", "secret_id": b},
    ]);
    let keys = ["a/1.csv", "a/2.csv", "b/3.csv"];
    for key in keys {
        aws.put(&bucket, key, key.as_bytes()).await;
    }
    let messages: Vec<(String, String)> = keys
        .iter()
        .map(|key| (unique("m"), s3_body(&bucket, key)))
        .collect();
    let function = Bootstrap::partners(&partners, &[]);
    function.invoke_all_ok(&sqs_event(&messages), Duration::from_secs(60));
    let control = |dir: &std::path::Path| {
        let files = util::left_in(dir);
        let ctl: Vec<&String> = files.iter().filter(|f| f.ends_with(".ctl")).collect();
        assert_eq!(ctl.len(), 1, "one control file: {files:?}");
        let text = std::fs::read_to_string(dir.join(ctl[0])).unwrap();
        let mut listed: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect();
        listed.sort();
        listed
    };
    // Paths as listed: relative to each partner's RemoteDirectory.
    assert_eq!(control(&a_dir), ["1.csv", "2.csv"]);
    assert_eq!(control(&b_dir), ["3.csv"]);
}
