//! The `sftp-forward` binary as an operator runs it: a subprocess with the standard AWS
//! environment pointing at the moto server, the partner a real sshd. Asserts exit codes, what is
//! printed, the bytes on the partner's disk and what is left in the queue.

mod util;

use serde_json::json;
use testkit::{scratch_dir, sshd};
use util::*;

/// A valid ed25519 key that is not the server's.
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

#[tokio::test]
async fn test_connection_on_a_trusted_key_logs_in_and_finds_the_directory_writable() {
    let (local, remote) = scratch_dir("tc-trusted");
    let (_dir, file) = secret_file(&partner_json(&remote));
    let run = sftp_forward(&["test-connection", "--secret-file", &file]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains(&keygen_fingerprint()), "{run:#?}");
    assert!(run.stdout.contains("trusted      yes"), "{run:#?}");
    assert!(run.stdout.contains("login        ok"), "{run:#?}");
    assert!(run.stdout.contains("writable     yes"), "{run:#?}");
    // The default policy: AES-GCM first, whose MAC is implicit (as `ssh -v` shows it).
    assert!(
        run.stdout
            .contains("cipher aes128-gcm@openssh.com, MAC implicit (AEAD cipher)"),
        "{run:#?}"
    );

    // The same through Secrets Manager, as JSON; the secret's private key is never printed.
    let aws = aws().await;
    let secret = aws.secret(&partner_json(&remote)).await;
    let run = sftp_forward(&["test-connection", "--secret-id", &secret, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["fingerprint"], keygen_fingerprint());
    assert_eq!(doc["trusted"], true);
    assert_eq!(doc["writable"], true);
    let key_body = sshd().keys.ed25519.lines().nth(1).unwrap().to_owned();
    assert!(!run.stdout.contains(&key_body) && !run.stderr.contains(&key_body));
    assert!(
        std::fs::read_dir(&local).unwrap().next().is_none(),
        "the write probe is removed"
    );

    // A read-only RemoteDirectory: login works, exit 8.
    let (_dir, file) = secret_file(&partner_json("readonly"));
    let run = sftp_forward(&["test-connection", "--secret-file", &file]).await;
    assert_eq!(run.code, 8, "{run:#?}");
    assert!(run.stdout.contains("writable     NO"), "{run:#?}");
}

#[tokio::test]
async fn test_connection_shows_the_algorithms_the_partners_policy_negotiated() {
    let (_local, remote) = scratch_dir("tc-algorithms");
    let mut partner = partner_json(&remote);
    partner["Algorithms"] = json!({
        "Kex": ["ecdh-sha2-nistp384"],
        "Ciphers": "aes256-ctr",
        "Macs": ["hmac-sha2-512"],
    });
    let (_dir, file) = secret_file(&partner);
    let run = sftp_forward(&["test-connection", "--secret-file", &file]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout.contains(
            "algorithms   kex ecdh-sha2-nistp384, host key ssh-ed25519, cipher aes256-ctr, \
             MAC hmac-sha2-512"
        ),
        "{run:#?}"
    );
    let run = sftp_forward(&["test-connection", "--secret-file", &file, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let negotiated = &run.json()["negotiated"];
    assert_eq!(negotiated["kex"], "ecdh-sha2-nistp384", "{run:#?}");
    assert_eq!(negotiated["cipher"], "aes256-ctr", "{run:#?}");

    // An algorithm the library does not implement is a config error naming the field (exit 3).
    partner["Algorithms"] = json!({"Macs": ["hmac-md5"]});
    let (_dir, file) = secret_file(&partner);
    let run = sftp_forward(&["test-connection", "--secret-file", &file]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr.contains("Algorithms.Macs") && run.stderr.contains("hmac-md5"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn test_connection_on_an_untrusted_key_shows_it_and_exits_6_without_logging_in() {
    let (_local, remote) = scratch_dir("tc-untrusted");
    let mut partner = partner_json(&remote);
    partner["TrustedHostKeys"] = json!([OTHER_KEY]);
    let (_dir, file) = secret_file(&partner);

    let run = sftp_forward(&["test-connection", "--secret-file", &file]).await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert!(run.stdout.contains(&keygen_fingerprint()), "{run:#?}");
    assert!(run.stdout.contains("trusted      NO"), "{run:#?}");
    assert!(run.stdout.contains("login        skipped"), "{run:#?}");

    // --print-host-key prints the server's key line (not the pinned one) and still exits 6.
    let run = sftp_forward(&[
        "test-connection",
        "--secret-file",
        &file,
        "--print-host-key",
    ])
    .await;
    assert_eq!(run.code, 6, "{run:#?}");
    let line = run.stdout.trim();
    assert!(sshd().host_key_line.starts_with(line), "{run:#?}");
    assert!(run.stderr.contains(&keygen_fingerprint()), "{run:#?}");

    // Onboarding: a secret with only Host and Port is enough to see the key.
    let s = sshd();
    let (_dir, bare) = secret_file(&json!({"Host": "127.0.0.1", "Port": s.port}));
    let run = sftp_forward(&[
        "test-connection",
        "--secret-file",
        &bare,
        "--print-host-key",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert_eq!(run.json()["fingerprint"], keygen_fingerprint());
    assert_eq!(run.json()["trusted"], false);

    // Once pinned, the same command exits 0.
    let (_dir, pinned) = secret_file(&partner_json(&remote));
    let run = sftp_forward(&[
        "test-connection",
        "--secret-file",
        &pinned,
        "--print-host-key",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
}

#[tokio::test]
async fn test_connection_with_a_rejected_login_exits_7() {
    let (_local, remote) = scratch_dir("tc-rejected");
    let mut partner = partner_json(&remote);
    partner.as_object_mut().unwrap().remove("PrivateKey");
    partner["Password"] = json!("not-the-password");
    let (_dir, file) = secret_file(&partner);
    let run = sftp_forward(&["test-connection", "--secret-file", &file, "--json"]).await;
    assert_eq!(run.code, 7, "{run:#?}");
    assert_eq!(run.json()["trusted"], true, "{run:#?}");
    assert!(!run.stdout.contains("not-the-password"), "{run:#?}");
    assert!(!run.stderr.contains("not-the-password"), "{run:#?}");
}

#[tokio::test]
async fn help_lists_the_commands_and_the_documented_exit_codes() {
    let run = sftp_forward(&["--help"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    for command in ["test-connection", "check", "send", "replay", "redrive"] {
        assert!(run.stdout.contains(&format!("  {command} ")), "{run:#?}");
    }
    // Every row of docs/CLI.md's exit code table is in --help with its code.
    let docs = include_str!("../../../docs/CLI.md");
    let table = docs.split("## Exit codes").nth(1).unwrap();
    let codes: Vec<&str> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next())
        .filter(|c| c.parse::<u8>().is_ok())
        .collect();
    assert_eq!(codes.len(), 10, "{table}");
    for code in codes {
        assert!(
            run.stdout.contains(&format!("\n  {code}  ")),
            "exit {code}: {run:#?}"
        );
    }

    // A usage error exits 2; an unreadable partner secret is configuration, exit 3, also as JSON.
    assert_eq!(sftp_forward(&["send", "--no-such-flag"]).await.code, 2);
    let missing = "/nonexistent/partner.json";
    let run = sftp_forward(&["test-connection", "--secret-file", missing, "--json"]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert_eq!(run.json()["exit_code"], 3, "{run:#?}");
    assert!(run.stderr.contains(missing), "{run:#?}");
}

#[tokio::test]
async fn send_delivers_an_s3_object_and_a_local_file() {
    let (aws, bucket, local, remote, secret) = setup("send").await;
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    aws.put(&bucket, "in/report 1.csv", &body).await;

    let url = format!("s3://{bucket}/in/report 1.csv");
    let run = sftp_forward(&["send", &url, "--secret-id", &secret]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read(local.join("in/report 1.csv")).unwrap(), body);
    // An explicit send sends again even though the object now carries a delivery receipt.
    std::fs::remove_file(local.join("in/report 1.csv")).unwrap();
    let run = sftp_forward(&["send", &url, "--secret-id", &secret]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read(local.join("in/report 1.csv")).unwrap(), body);

    // --remote-path, JSON: the object goes where the operator says.
    let run = sftp_forward(&[
        "send",
        &url,
        "--secret-id",
        &secret,
        "--remote-path",
        "manual/again.csv",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json()["outcome"]["bytes"], body.len());
    assert_eq!(std::fs::read(local.join("manual/again.csv")).unwrap(), body);

    // A local file, with the partner JSON from a file.
    let (dir, file) = secret_file(&partner_json(&remote));
    let path = dir.path().join("local.bin");
    std::fs::write(&path, b"local bytes\n").unwrap();
    let run = sftp_forward(&["send", path.to_str().unwrap(), "--secret-file", &file]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        std::fs::read(local.join("local.bin")).unwrap(),
        b"local bytes\n"
    );
    // Not a terminal: plain log lines on stderr, no bar.
    assert!(run.stderr.contains("sending"), "{run:#?}");

    // A missing object is reported, not sent.
    let missing = format!("s3://{bucket}/in/nope.csv");
    let run = sftp_forward(&["send", &missing, "--secret-id", &secret]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(run.stderr.contains("does not exist"), "{run:#?}");
}

#[tokio::test]
async fn send_draws_a_progress_bar_on_a_terminal_and_plain_lines_elsewhere() {
    let (local, remote) = scratch_dir("send-tty");
    let (dir, file) = secret_file(&partner_json(&remote));
    // Big enough that the transfer spans several frames of the bar (20 a second).
    let body: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &body).unwrap();
    let args = ["send", path.to_str().unwrap(), "--secret-file", &file];

    // What the operator sees: the log line, the bar mid-transfer
    // (`[=====>    ] 5.25 MiB/16.00 MiB 7.58 MiB/s ETA 1s`), then the result.
    let assert_bar = |run: &Run| {
        assert_eq!(run.code, 0, "{run:#?}");
        assert!(
            run.showed(|l| l.contains("[=")
                && l.contains("/16.00 MiB ")
                && !l.contains(" 16.00 MiB/")
                && l.contains("B/s ETA ")),
            "no bar with bytes, rate and ETA mid-transfer: {:#?}",
            run.screen()
        );
        assert!(
            run.showed(|l| l.starts_with("sending ")),
            "{:#?}",
            run.screen()
        );
        assert!(
            run.showed(|l| l.starts_with("sent ")),
            "{:#?}",
            run.screen()
        );
    };
    assert_bar(&sftp_forward_tty(&args, "xterm").await);
    assert_eq!(std::fs::read(local.join("big.bin")).unwrap(), body);

    // The same for an S3 object, metered as it streams from S3.
    let aws = aws().await;
    let bucket = aws.bucket("send-tty").await;
    aws.put(&bucket, "big.bin", &body).await;
    std::fs::remove_file(local.join("big.bin")).unwrap();
    let url = format!("s3://{bucket}/big.bin");
    assert_bar(&sftp_forward_tty(&["send", &url, "--secret-file", &file], "xterm").await);
    assert_eq!(std::fs::read(local.join("big.bin")).unwrap(), body);

    // A terminal that cannot draw a bar (TERM=dumb): the same plain lines, nothing lost.
    let run = sftp_forward_tty(&args, "dumb").await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.showed(|l| l.starts_with("sending ")), "{run:#?}");
    assert!(!run.stdout.contains("ETA"), "{run:#?}");

    // Not a terminal: plain log lines on stderr, no bar and no control sequences.
    let run = sftp_forward(&args).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stderr.starts_with("sending "), "{run:#?}");
    assert!(run.stdout.starts_with("sent "), "{run:#?}");
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains('\x1b') && !out.contains('\r'), "{run:#?}");
        assert!(!out.contains("ETA"), "{run:#?}");
    }
}

#[tokio::test]
async fn replay_skips_delivered_objects_sends_the_rest_and_tables_the_failures() {
    let (aws, bucket, local, remote, secret) = setup("replay").await;
    for name in ["a.csv", "b.csv", "c.csv"] {
        aws.put(&bucket, &format!("day/{name}"), name.as_bytes())
            .await;
    }
    // A key the route refuses: a permanent failure, with its reason in the table.
    aws.put(&bucket, "day/bad/../x.csv", b"x").await;
    aws.put(&bucket, "other/x.csv", b"x").await;
    // a.csv was delivered before (receipt on the object); its copy at the partner was since
    // picked up, so a re-send would show up on disk.
    let a = format!("s3://{bucket}/day/a.csv");
    assert_eq!(
        sftp_forward(&["send", &a, "--secret-id", &secret])
            .await
            .code,
        0
    );
    std::fs::remove_file(local.join("day/a.csv")).unwrap();

    let prefix = format!("s3://{bucket}/day/");
    let base = ["replay", &prefix, "--secret-id", &secret];
    let run = sftp_forward(&[&base[..], &["--concurrency", "2", "--json"]].concat()).await;
    assert_eq!(run.code, 5, "a permanent failure: {run:#?}");
    let doc = run.json();
    let counts = |doc: &serde_json::Value| {
        [&doc["sent"], &doc["skipped"], &doc["failed"]].map(|v| v.as_u64())
    };
    assert_eq!(counts(&doc), [Some(2), Some(1), Some(1)], "{doc:#}");
    let bad = format!("s3://{bucket}/day/bad/../x.csv");
    let failed = doc["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["item"] == bad.as_str())
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(failed["class"], "permanent", "{doc:#}");
    assert!(
        failed["reason"].as_str().unwrap().contains("'..'"),
        "{doc:#}"
    );
    assert!(
        !local.join("day/a.csv").exists(),
        "a.csv was not sent again"
    );
    assert_eq!(std::fs::read(local.join("day/b.csv")).unwrap(), b"b.csv");
    assert_eq!(std::fs::read(local.join("day/c.csv")).unwrap(), b"c.csv");
    assert!(
        !local.join("day/x.csv").exists(),
        "the refused key wrote nothing"
    );
    assert!(!local.join("other").exists(), "only the prefix is replayed");

    // The text summary table: one row per object with its outcome and reason, then the counts.
    let run = sftp_forward(&base).await;
    assert_eq!(run.code, 5, "{run:#?}");
    let row = |item: &str| run.row(&format!("{prefix}{item}")).to_owned();
    assert!(row("a.csv").starts_with("skipped "), "{run:#?}");
    assert!(
        row("a.csv").contains(&format!("already delivered to {remote}/day/a.csv at ")),
        "{run:#?}"
    );
    assert!(row("bad/../x.csv").starts_with("failed "), "{run:#?}");
    assert!(
        row("bad/../x.csv").contains("permanent: ")
            && row("bad/../x.csv").contains("contains a '..' segment"),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("4 total: 0 sent, 3 skipped, 1 failed"),
        "{run:#?}"
    );

    // On a terminal, the overall bar counts objects: `[=====>   ] 2/4 objects ETA 0s`.
    let run = sftp_forward_tty(&base, "xterm").await;
    assert_eq!(run.code, 5, "{run:#?}");
    assert!(
        run.showed(|l| l.contains("] 2/4 objects ETA ")),
        "no overall bar: {:#?}",
        run.screen()
    );

    // --force sends what receipts say was delivered.
    let run = sftp_forward(&[&base[..], &["--force"]].concat()).await;
    assert!(
        run.stdout.contains("4 total: 3 sent, 0 skipped, 1 failed"),
        "{run:#?}"
    );
    assert_eq!(std::fs::read(local.join("day/a.csv")).unwrap(), b"a.csv");
}

#[tokio::test]
async fn replay_since_sends_only_objects_modified_at_or_after_the_time() {
    let (aws, bucket, local, _, secret) = setup("since").await;
    aws.put(&bucket, "day/early-1.csv", b"e1").await;
    aws.put(&bucket, "day/early-2.csv", b"e2").await;
    // S3 times are whole seconds: the cut-off lies more than a second after the early uploads.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let since = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    aws.put(&bucket, "day/late-1.csv", b"l1").await;
    aws.put(&bucket, "day/late-2.csv", b"l2").await;

    let prefix = format!("s3://{bucket}/day/");
    let base = ["replay", &prefix, "--since", &since, "--secret-id", &secret];
    let run = sftp_forward(&base).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read(local.join("day/late-1.csv")).unwrap(), b"l1");
    assert_eq!(std::fs::read(local.join("day/late-2.csv")).unwrap(), b"l2");
    assert!(!local.join("day/early-1.csv").exists(), "{run:#?}");
    assert!(!local.join("day/early-2.csv").exists(), "{run:#?}");
    assert!(!run.stdout.contains("early-"), "{run:#?}");
    assert!(
        run.stdout.contains("2 total: 2 sent, 0 skipped, 0 failed"),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains(&format!("2 modified before {since} not selected")),
        "{run:#?}"
    );

    // JSON: the count left out, and the later objects now carry receipts.
    let run = sftp_forward(&[&base[..], &["--dry-run", "--json"]].concat()).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["since"], since, "{doc:#}");
    assert_eq!(doc["not_selected"], 2, "{doc:#}");
    assert_eq!(doc["skipped"], 2, "{doc:#}");
}

#[tokio::test]
async fn replay_dry_run_sends_nothing() {
    let (aws, bucket, local, remote, secret) = setup("dry").await;
    aws.put(&bucket, "one.csv", b"1").await;
    aws.put(&bucket, "two.csv", b"2").await;
    let one = format!("s3://{bucket}/one.csv");
    let run = sftp_forward(&["send", &one, "--secret-id", &secret]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    std::fs::remove_file(local.join("one.csv")).unwrap();

    // A partner nobody listens for: a dry run that connected would fail.
    let mut partner = partner_json(&remote);
    partner["Port"] = json!(1);
    let (_dir, file) = secret_file(&partner);
    let prefix = format!("s3://{bucket}");
    let base = ["replay", &prefix, "--secret-file", &file, "--dry-run"];
    let run = sftp_forward(&base).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let row = |name: &str| run.row(&format!("{prefix}/{name}")).to_owned();
    assert!(row("one.csv").starts_with("would skip "), "{run:#?}");
    assert!(row("two.csv").starts_with("would send "), "{run:#?}");
    assert!(
        row("two.csv").contains("→ two.csv under RemoteDirectory (1 bytes)"),
        "{run:#?}"
    );
    assert!(
        run.stdout
            .contains("2 total: 1 would be sent, 1 would be skipped, 0 failed"),
        "{run:#?}"
    );
    let run = sftp_forward(&[&base[..], &["--force"]].concat()).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("2 total: 2 would be sent"), "{run:#?}");

    assert!(
        std::fs::read_dir(&local).unwrap().next().is_none(),
        "nothing sent"
    );
    assert!(
        aws.tags(&bucket, "two.csv").await.is_empty(),
        "no receipt written"
    );
}

#[tokio::test]
async fn redrive_empties_the_dlq_except_the_permanently_failing_message() {
    let (aws, bucket, local, _, secret) = setup("redrive").await;
    aws.put(&bucket, "good.csv", b"good").await;
    aws.put(&bucket, "bad/../escape.csv", b"bad").await;
    let bad = s3_body(&bucket, "bad/../escape.csv");
    let dlq = aws
        .queue_with(&[s3_body(&bucket, "good.csv"), bad.clone()])
        .await;

    let run = sftp_forward(&["redrive", "--dlq", &dlq, "--secret-id", &secret, "--json"]).await;
    assert_eq!(run.code, 5, "a permanent failure remains: {run:#?}");
    let doc = run.json();
    assert_eq!(doc["deleted"], 1, "{doc:#}");
    assert_eq!(doc["remaining"], 1, "{doc:#}");
    assert_eq!(std::fs::read(local.join("good.csv")).unwrap(), b"good");
    assert_eq!(aws.bodies(&dlq).await, [bad], "only the bad message stays");

    // Again, as text: the failure with its reason, and what remains in the queue.
    let run = sftp_forward(&["redrive", "--dlq", &dlq, "--secret-id", &secret]).await;
    assert_eq!(run.code, 5, "{run:#?}");
    let row = run.row(&format!("s3://{bucket}/bad/../escape.csv"));
    assert!(
        row.starts_with("failed ") && row.contains("permanent: ") && row.contains("'..'"),
        "{run:#?}"
    );
    assert!(
        run.stdout.ends_with(&format!(
            "1 messages read, 0 deleted, 1 kept; 1 remain in {dlq}\n"
        )),
        "{run:#?}"
    );
}

#[tokio::test]
async fn check_reports_the_egress_ip_and_fails_loudly_when_it_is_not_expected() {
    let (_local, remote) = scratch_dir("check");
    let (_dir, file) = secret_file(&partner_json(&remote));
    let echo = testkit::EchoServer::start(std::net::Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let base = ["check", "--secret-file", &file, "--echo-url", &url];

    // The egress IP (127.0.0.1 on loopback) is one of the expected ones: exit 0.
    let run = sftp_forward(
        &[
            &base[..],
            &["--expect-ip", "203.0.113.10", "--expect-ip", "127.0.0.1"],
        ]
        .concat(),
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains(&keygen_fingerprint()), "{run:#?}");
    assert!(run.stdout.contains("trusted      yes"), "{run:#?}");
    assert!(run.stdout.contains("writable     yes"), "{run:#?}");
    assert!(run.stdout.contains("egress ip    127.0.0.1"), "{run:#?}");
    assert!(run.stdout.contains("(matches)"), "{run:#?}");

    // Not expected: exit 9, and stderr names the IP seen and the one expected.
    let run = sftp_forward(&[&base[..], &["--expect-ip", "203.0.113.10"]].concat()).await;
    assert_eq!(run.code, 9, "{run:#?}");
    assert!(
        run.stderr.contains("127.0.0.1") && run.stderr.contains("203.0.113.10"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("NO MATCH"), "{run:#?}");

    // --json: the report's fields and the exit code.
    let run = sftp_forward(&[&base[..], &["--expect-ip", "203.0.113.10", "--json"]].concat()).await;
    assert_eq!(run.code, 9, "{run:#?}");
    let doc = run.json();
    assert_eq!(doc["ok"], false, "{doc:#}");
    assert_eq!(doc["egress_ip"], "127.0.0.1", "{doc:#}");
    assert_eq!(
        doc["expected_egress_ips"],
        json!(["203.0.113.10"]),
        "{doc:#}"
    );
    assert_eq!(doc["egress_match"], "mismatch", "{doc:#}");
    assert_eq!(doc["echo_url"], url, "{doc:#}");
    assert_eq!(doc["fingerprint"], keygen_fingerprint(), "{doc:#}");
    assert_eq!(doc["trusted"], true, "{doc:#}");
    assert_eq!(doc["login"], "ok", "{doc:#}");
    assert_eq!(doc["writable"], true, "{doc:#}");
    assert_eq!(doc["problems"][0]["kind"], "egress_mismatch", "{doc:#}");
    assert_eq!(doc["exit_code"], 9, "{doc:#}");
    let key_body = sshd().keys.ed25519.lines().nth(1).unwrap().to_owned();
    assert!(!run.stdout.contains(&key_body) && !run.stderr.contains(&key_body));

    // No expected IP: shown, not compared, not a failure.
    let run = sftp_forward(&base).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("not compared"), "{run:#?}");
}

#[tokio::test]
async fn check_on_an_untrusted_key_or_without_an_echo_service_exits_with_their_codes() {
    let (_local, remote) = scratch_dir("check-bad");
    let echo = testkit::EchoServer::start(std::net::Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let mut partner = partner_json(&remote);
    partner["TrustedHostKeys"] = json!([OTHER_KEY]);
    let (_dir, untrusted) = secret_file(&partner);
    let run = sftp_forward(&[
        "check",
        "--secret-file",
        &untrusted,
        "--echo-url",
        &url,
        "--expect-ip",
        "127.0.0.1",
    ])
    .await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert!(run.stdout.contains("login        skipped"), "{run:#?}");

    // Nothing listens on the echo URL: transient, exit 4, the URL named.
    let closed = testkit::echo::closed_url();
    let (_dir, file) = secret_file(&partner_json(&remote));
    let run = sftp_forward(&[
        "check",
        "--secret-file",
        &file,
        "--echo-url",
        &closed,
        "--expect-ip",
        "127.0.0.1",
    ])
    .await;
    assert_eq!(run.code, 4, "{run:#?}");
    assert!(run.stderr.contains(&closed), "{run:#?}");

    // A URL that is not http(s) is a usage error.
    let run = sftp_forward(&["check", "--secret-file", &file, "--echo-url", "ftp://x/"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
}

#[tokio::test]
async fn replay_opens_no_more_connections_than_its_concurrency() {
    // An sshd of its own, so that the other tests' logins are not counted.
    let partner = testkit::sshd_limited(10, "10:30:100").unwrap_or_else(|e| panic!("{e}"));
    let aws = aws().await;
    let bucket = aws.bucket("concurrency").await;
    let (local, remote) = partner.scratch_dir("concurrency");
    let secret = aws.secret(&partner.partner_json(&remote)).await;
    for i in 0..8 {
        aws.put(
            &bucket,
            &format!("in/{i}.csv"),
            format!("file {i}\n").as_bytes(),
        )
        .await;
    }
    let prefix = format!("s3://{bucket}/in/");
    let run = sftp_forward(&[
        "replay",
        &prefix,
        "--secret-id",
        &secret,
        "--concurrency",
        "3",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json()["sent"], 8, "{run:#?}");
    for i in 0..8 {
        assert_eq!(
            std::fs::read_to_string(local.join(format!("in/{i}.csv"))).unwrap(),
            format!("file {i}\n")
        );
    }
    let logins = partner.logins(&partner.log()).len();
    assert!(
        (1..=3).contains(&logins),
        "{logins} logins for --concurrency 3 and 8 objects:\n{}",
        partner.log()
    );
}
