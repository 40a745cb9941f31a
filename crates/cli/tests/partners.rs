//! `--partner NAME` and `--all` against a stack of two partners: the stack's function on moto
//! (its `SFTP_FORWARD_PARTNERS`), each partner a real sshd of its own on its own port.

mod util;

use std::sync::OnceLock;

use serde_json::json;
use sftp_forward_core::env;
use testkit::{scratch_dir, sshd, Sshd};
use util::stack::{spec, stack_with, stack_with_env};
use util::*;

/// A valid ed25519 key that is not the servers'.
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// Partner b's server: another sshd, on another port than the shared one (partner a's).
fn second() -> &'static Sshd {
    static SECOND: OnceLock<Sshd> = OnceLock::new();
    SECOND.get_or_init(|| {
        testkit::sshd_styled(&testkit::Style::new()).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A stack of partners `a` (keys `a/`, the shared sshd) and `b` (keys `b/`, [`second`], files
/// named by their basename): `(aws, stack, a's directory, b's directory, b's secret)`.
async fn two_partners(hint: &str) -> (Aws, String, std::path::PathBuf, std::path::PathBuf, String) {
    let aws = aws().await;
    let (local_a, remote_a) = scratch_dir(hint);
    let (local_b, remote_b) = second().scratch_dir(hint);
    let secret_a = aws.secret(&partner_json(&remote_a)).await;
    let secret_b = aws.secret(&second().partner_json(&remote_b)).await;
    let mut b = spec("b", &secret_b);
    b.remote_path_template = Some("{basename}".into());
    let stack = stack_with(&aws.config, vec![spec("a", &secret_a), b]).await;
    (aws, stack, local_a, local_b, secret_b)
}

#[tokio::test]
async fn send_to_a_named_partner_lands_on_its_disk_under_its_route() {
    let (aws, stack, local_a, local_b, _) = two_partners("partner-send").await;
    assert_ne!(sshd().port, second().port);
    let bucket = aws.bucket("partner-send").await;
    aws.put(&bucket, "a/in/x.csv", b"for a\n").await;
    aws.put(&bucket, "b/deep/y.csv", b"for b\n").await;

    // a's prefix is stripped (its default), b's template keeps the basename.
    let x = format!("s3://{bucket}/a/in/x.csv");
    let run = sftp_forward(&["send", &x, "--partner", "a", "--stack", &stack]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read(local_a.join("in/x.csv")).unwrap(), b"for a\n");
    let y = format!("s3://{bucket}/b/deep/y.csv");
    let run = sftp_forward(&["send", &y, "--partner", "b", "--stack", &stack]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(std::fs::read(local_b.join("y.csv")).unwrap(), b"for b\n");
    assert_eq!(left_in(&local_a), ["in/x.csv"], "only a's file at a");
    assert_eq!(left_in(&local_b), ["y.csv"], "only b's file at b");
    // b's object is not a's: refused as the function would refuse it, nothing sent.
    let run = sftp_forward(&["send", &y, "--partner", "a", "--stack", &stack]).await;
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr
            .contains("no partner's prefix matches key \"b/deep/y.csv\""),
        "{run:#?}"
    );
    assert_eq!(left_in(&local_a), ["in/x.csv"], "nothing of b's at a");

    // replay --dry-run maps with the partner's route too (b: its basename under its root).
    let prefix = format!("s3://{bucket}/b/");
    let run = sftp_forward(&[
        "replay",
        &prefix,
        "--partner",
        "b",
        "--stack",
        &stack,
        "--dry-run",
        "--force",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.row(&format!("{prefix}deep/y.csv"))
            .contains("→ y.csv under RemoteDirectory"),
        "{run:#?}"
    );

    // The route flags given override the partner's route.
    let run = sftp_forward(&[
        "send",
        &x,
        "--partner",
        "a",
        "--stack",
        &stack,
        "--template",
        "manual/{basename}",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        std::fs::read(local_a.join("manual/x.csv")).unwrap(),
        b"for a\n"
    );

    // A name the stack does not have: configuration (exit 3), the partners listed.
    let run = sftp_forward(&["send", &x, "--partner", "nope", "--stack", &stack]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(
        run.stderr.contains("\"nope\"") && run.stderr.contains("its partners are: a, b"),
        "{run:#?}"
    );
    // A stack that does not exist: exit 3, naming its function.
    let run = sftp_forward(&["send", &x, "--partner", "a", "--stack", "no-such"]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stderr.contains("no-such-forward"), "{run:#?}");
    // --partner with --secret-id, or without a stack: usage errors.
    let run = sftp_forward(&[
        "send",
        &x,
        "--partner",
        "a",
        "--secret-id",
        "s",
        "--stack",
        &stack,
    ])
    .await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert_eq!(sftp_forward(&["send", &x, "--partner", "a"]).await.code, 2);
}

#[tokio::test]
async fn a_single_partner_stack_has_its_partner_called_default() {
    let (aws, bucket, local, _, secret) = setup("partner-single").await;
    let vars = [
        (env::SECRET_ID, secret.as_str()),
        (env::REMOTE_PATH_TEMPLATE, "single/{basename}"),
    ];
    let stack = stack_with_env(&aws.config, &vars).await;
    aws.put(&bucket, "day/z.csv", b"single\n").await;
    let z = format!("s3://{bucket}/day/z.csv");
    let run = sftp_forward(&["send", &z, "--partner", "default", "--stack", &stack]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        std::fs::read(local.join("single/z.csv")).unwrap(),
        b"single\n"
    );
    // --function names the function directly.
    let function = format!("{stack}-forward");
    let run = sftp_forward(&["send", &z, "--partner", "acme", "--function", &function]).await;
    assert_eq!(run.code, 3, "{run:#?}");
    assert!(run.stderr.contains("its partners are: default"), "{run:#?}");
}

#[tokio::test]
async fn all_tables_every_partner_and_fails_naming_the_one_that_failed() {
    let (aws, stack, _, _, secret_b) = two_partners("partner-all").await;
    let row = |run: &Run, name: &str| -> String {
        run.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for partner {name}: {run:#?}"))
            .to_owned()
    };

    let run = sftp_forward(&["test-connection", "--all", "--stack", &stack]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    for (name, port) in [("a", sshd().port), ("b", second().port)] {
        let row = row(&run, name);
        assert!(row.contains(&format!(" 127.0.0.1:{port} ")), "{row}");
        assert!(
            row.contains(" trusted yes ") && row.contains(" ok "),
            "{row}"
        );
        assert!(row.ends_with(" ok"), "{row}");
    }
    assert!(
        run.stdout.contains("2 partners: 2 ok, 0 failed"),
        "{run:#?}"
    );

    // check --all: the egress IP seen and the one expected, per partner.
    let echo = testkit::EchoServer::start(std::net::Ipv4Addr::LOCALHOST);
    let url = echo.url();
    let check = ["check", "--all", "--stack", &stack, "--echo-url", &url];
    let run = sftp_forward(&[&check[..], &["--expect-ip", "127.0.0.1"]].concat()).await;
    assert_eq!(run.code, 0, "{run:#?}");
    for name in ["a", "b"] {
        assert!(
            row(&run, name).contains("127.0.0.1 / 127.0.0.1 (matches)"),
            "{run:#?}"
        );
    }
    let run = sftp_forward(&[&check[..], &["--expect-ip", "203.0.113.7"]].concat()).await;
    assert_eq!(run.code, 9, "{run:#?}");
    assert!(
        row(&run, "b").contains("FAILED: egress mismatch"),
        "{run:#?}"
    );

    // b's secret pins another key: b fails (exit 6), a is still ok, stderr names b.
    let mut untrusted = second().partner_json("upload");
    untrusted["TrustedHostKeys"] = json!([OTHER_KEY]);
    aws.set_secret(&secret_b, &untrusted).await;
    let run = sftp_forward(&["test-connection", "--all", "--stack", &stack]).await;
    assert_eq!(run.code, 6, "{run:#?}");
    assert!(row(&run, "a").ends_with(" ok"), "{run:#?}");
    assert!(
        row(&run, "b").contains("trusted NO")
            && row(&run, "b").contains("FAILED: untrusted host key"),
        "{run:#?}"
    );
    assert!(
        run.stderr
            .contains("error: partner b: the host key is not in TrustedHostKeys"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("partner a:"), "{run:#?}");

    // b's server is not listening (its secret names a closed port): b unreachable, a still ok.
    let mut closed = second().partner_json("upload");
    closed["Port"] = json!(1);
    aws.set_secret(&secret_b, &closed).await;
    let run = sftp_forward(&["test-connection", "--all", "--stack", &stack]).await;
    assert_ne!(run.code, 0, "{run:#?}");
    assert!(row(&run, "a").ends_with(" ok"), "{run:#?}");
    assert!(row(&run, "b").ends_with("FAILED: unreachable"), "{run:#?}");
    assert!(
        run.stderr
            .contains("error: partner b: reading the host key of 127.0.0.1:1"),
        "{run:#?}"
    );
    aws.set_secret(&secret_b, &untrusted).await;

    // The same as JSON: one object per partner, in the stack's order, with its exit code.
    let run = sftp_forward(&["test-connection", "--all", "--stack", &stack, "--json"]).await;
    assert_eq!(run.code, 6, "{run:#?}");
    let doc = run.json();
    let partners = doc["partners"].as_array().unwrap();
    let names: Vec<_> = partners
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{doc:#}");
    assert_eq!(partners[0]["exit_code"], 0, "{doc:#}");
    assert_eq!(partners[1]["exit_code"], 6, "{doc:#}");
    assert_eq!(partners[1]["trusted"], false, "{doc:#}");
    assert_eq!(doc["exit_code"], 6, "{doc:#}");

    // One partner of the stack, by name, as test-connection shows a single partner.
    let run = sftp_forward(&["test-connection", "--partner", "a", "--stack", &stack]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stdout
            .contains(&format!("partner      127.0.0.1:{} ", sshd().port)),
        "{run:#?}"
    );
}
