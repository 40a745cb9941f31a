//! The forwarding core against a real OpenSSH sshd (started once for this test binary by `testkit`).
//! Every test asserts what a user would check: the bytes on the partner's disk, the error class and
//! message an operator reads.

mod util;

use std::time::Duration;

use forward::{Connector, Error, ErrorClass, Overwrite, Partner, PublishOutcome, Route, Tuning};
use serde_json::{json, Value};
use testkit::{scratch_dir, sshd};
use util::*;

#[tokio::test]
async fn key_login_publishes_the_exact_bytes() {
    let (local, remote) = scratch_dir("key");
    let mut c = connector(&partner_json(&remote));
    let done = publish_bytes(&mut c, "hello.txt", b"hello partner\n")
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::Written);
    assert_eq!(done.bytes, 14);
    assert_eq!(
        std::fs::read(local.join("hello.txt")).unwrap(),
        b"hello partner\n"
    );
    assert_eq!(
        files_under(&local),
        ["hello.txt"],
        "no temporary file is left behind"
    );
}

#[tokio::test]
async fn password_login_works() {
    let (local, remote) = scratch_dir("password");
    let mut v = partner_json(&remote);
    v.as_object_mut().unwrap().remove("PrivateKey");
    v["Password"] = json!(sshd().password);
    publish_bytes(&mut connector(&v), "p.txt", b"by password")
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("p.txt")).unwrap(), b"by password");
}

#[tokio::test]
async fn passphrase_protected_rsa_and_ecdsa_keys_log_in() {
    let s = sshd();
    let (local, remote) = scratch_dir("keys");
    let cases = [
        (
            "encrypted-ed25519",
            s.keys.ed25519_encrypted.clone(),
            Some(s.keys.passphrase.clone()),
        ),
        ("rsa-pem", s.keys.rsa.clone(), None),
        ("ecdsa", s.keys.ecdsa.clone(), None),
    ];
    for (name, key, passphrase) in cases {
        let mut v = partner_json(&remote);
        v["PrivateKey"] = json!(key);
        if let Some(p) = passphrase {
            v["PrivateKeyPassphrase"] = json!(p);
        }
        publish_bytes(&mut connector(&v), name, name.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(std::fs::read(local.join(name)).unwrap(), name.as_bytes());
    }
}

#[tokio::test]
async fn a_rejected_login_is_permanent_and_names_the_user_not_the_secret() {
    let s = sshd();
    let (local, remote) = scratch_dir("badauth");
    let mut v = partner_json(&remote);
    v.as_object_mut().unwrap().remove("PrivateKey");
    v["Password"] = json!("Wr0ng-Passw0rd-7f3e");
    let err = publish_bytes(&mut connector(&v), "x", b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AuthRejected { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let msg = err.to_string();
    assert!(msg.contains(&s.user) && msg.contains("password"), "{msg}");
    assert!(
        !msg.contains("Wr0ng-Passw0rd-7f3e") && !format!("{err:?}").contains("Wr0ng-Passw0rd-7f3e")
    );

    // A key the server does not know, with no password to fall back to.
    let mut v = partner_json(&remote);
    v["PrivateKey"] = json!(s.keys.unauthorized_ed25519);
    let err = publish_bytes(&mut connector(&v), "x", b"x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("publickey"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(files_under(&local).is_empty());
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_before_login_and_nothing_is_written() {
    let s = sshd();
    let (local, remote) = scratch_dir("hostkey");
    let mut v = partner_json(&remote);
    // A valid key that is not the server's.
    v["TrustedHostKeys"] =
        json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"]);
    let err = publish_bytes(&mut connector(&v), "x", b"secret data")
        .await
        .unwrap_err();
    let Error::UntrustedHostKey {
        algorithm,
        fingerprint,
        ..
    } = &err
    else {
        panic!("expected an untrusted host key, got {err:?}");
    };
    assert_eq!(algorithm, "ssh-ed25519");
    assert_eq!(fingerprint, &s.host_key_fingerprint());
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains("TrustedHostKeys"), "{err}");
    assert!(files_under(&local).is_empty());
}

#[tokio::test]
async fn a_host_key_scan_shows_the_key_without_trusting_it_or_logging_in() {
    let s = sshd();
    let algorithms = forward::Algorithms::default();
    let key = forward::scan_host_key("127.0.0.1", s.port, &algorithms, None, &Tuning::default())
        .await
        .unwrap();
    assert_eq!(
        forward::Fingerprint::of(&key).sha256,
        s.host_key_fingerprint()
    );
    let line = forward::hostkey::public_key_line(&key);
    assert!(s.host_key_line.starts_with(&line), "{line}");
    // Only Host and Port are needed to scan; nothing else of the secret is required.
    let endpoint = forward::config::endpoint_from_json(&format!(
        r#"{{"Host": "127.0.0.1", "Port": {}}}"#,
        s.port
    ))
    .unwrap();
    assert_eq!(endpoint, ("127.0.0.1".to_owned(), s.port));
}

#[tokio::test]
async fn check_writable_tells_a_writable_directory_from_a_read_only_one() {
    let (local, remote) = scratch_dir("writable");
    let tuning = Tuning::default();
    let mut ok = forward::Session::open(&partner(&partner_json(&remote)), &tuning)
        .await
        .unwrap();
    ok.check_writable().await.unwrap();
    assert!(files_under(&local).is_empty(), "the probe is removed");
    let mut ro = forward::Session::open(&partner(&partner_json("readonly")), &tuning)
        .await
        .unwrap();
    let err = ro.check_writable().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
}

#[tokio::test]
async fn the_second_of_two_trusted_keys_may_be_the_one_that_matches() {
    let s = sshd();
    let (local, remote) = scratch_dir("rotation");
    let mut v = partner_json(&remote);
    v["TrustedHostKeys"] = json!([
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl old-key",
        format!("[127.0.0.1]:{} {}", s.port, s.host_key_line),
    ]);
    publish_bytes(&mut connector(&v), "r.txt", b"rotated")
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("r.txt")).unwrap(), b"rotated");
}

#[tokio::test]
async fn an_empty_file_is_published() {
    let (local, remote) = scratch_dir("empty");
    let done = publish_bytes(&mut connector(&partner_json(&remote)), "empty.csv", b"")
        .await
        .unwrap();
    assert_eq!(done.bytes, 0);
    assert_eq!(std::fs::metadata(local.join("empty.csv")).unwrap().len(), 0);
}

#[tokio::test]
async fn a_one_gib_file_arrives_with_the_same_sha256() {
    const LEN: u64 = 1 << 30;
    let (local, remote) = scratch_dir("big");
    let expected = sha256_of_reader(Noise::new(42, LEN));
    let mut c = connector(&partner_json(&remote));
    let done = c
        .publish(
            Noise::new(42, LEN),
            Some(LEN),
            &path("big.bin"),
            Overwrite::Overwrite,
        )
        .await
        .unwrap();
    let secs = done.elapsed.as_secs_f64();
    eprintln!(
        "1 GiB published in {secs:.2} s = {:.0} MB/s",
        LEN as f64 / secs / 1e6
    );
    assert_eq!(done.bytes, LEN);
    let on_disk = sha256_of_reader(std::fs::File::open(local.join("big.bin")).unwrap());
    assert_eq!(on_disk, expected);
    std::fs::remove_file(local.join("big.bin")).unwrap();
}

#[tokio::test]
async fn overwrite_policies() {
    let (local, remote) = scratch_dir("policies");
    let mut c = connector(&partner_json(&remote));
    let p = path("f.txt");
    c.publish(&b"first"[..], Some(5), &p, Overwrite::Overwrite)
        .await
        .unwrap();

    // overwrite replaces the content
    c.publish(&b"second!"[..], Some(7), &p, Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(std::fs::read(local.join("f.txt")).unwrap(), b"second!");

    // fail-if-exists refuses and leaves the file alone
    let err = c
        .publish(&b"third"[..], Some(5), &p, Overwrite::FailIfExists)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(std::fs::read(local.join("f.txt")).unwrap(), b"second!");

    // fail-if-exists writes a new name
    c.publish(
        &b"new"[..],
        Some(3),
        &path("g.txt"),
        Overwrite::FailIfExists,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(local.join("g.txt")).unwrap(), b"new");

    // skip-if-same-size skips a same-size file and replaces a different-size one
    let done = c
        .publish(&b"SECOND!"[..], Some(7), &p, Overwrite::SkipIfSameSize)
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::SkippedSameSize);
    assert_eq!(std::fs::read(local.join("f.txt")).unwrap(), b"second!");
    let done = c
        .publish(&b"longer one"[..], Some(10), &p, Overwrite::SkipIfSameSize)
        .await
        .unwrap();
    assert_eq!(done.outcome, PublishOutcome::Written);
    assert_eq!(std::fs::read(local.join("f.txt")).unwrap(), b"longer one");
    assert_eq!(files_under(&local), ["f.txt", "g.txt"]);
}

#[tokio::test]
async fn keys_map_to_nested_directories_that_are_created() {
    let (local, remote) = scratch_dir("nested");
    let mut c = connector(&partner_json(&remote));
    let route = Route::new("inbound/{key}", Some("exports/")).unwrap();
    for (key, body) in [
        ("exports/2024/11/25/orders.csv", "o"),
        ("exports/2024/11/26/orders.csv", "p"),
        ("exports//2024/./11/x.csv", "q"),
        ("exports/données/報告 2024 📦.csv", "unicode"),
    ] {
        let p = route.map(key).unwrap();
        c.publish(
            body.as_bytes(),
            Some(body.len() as u64),
            &p,
            Overwrite::Overwrite,
        )
        .await
        .unwrap();
    }
    assert_eq!(
        files_under(&local),
        [
            "inbound/2024/11/25/orders.csv",
            "inbound/2024/11/26/orders.csv",
            "inbound/2024/11/x.csv",
            "inbound/données/報告 2024 📦.csv",
        ]
    );
    assert_eq!(
        std::fs::read(local.join("inbound/données/報告 2024 📦.csv")).unwrap(),
        b"unicode"
    );
}

#[tokio::test]
async fn traversal_keys_never_leave_the_remote_directory() {
    let s = sshd();
    let (local, remote) = scratch_dir("traversal");
    let mut c = connector(&partner_json(&remote));
    let route = Route::default();
    for bad in [
        "../escape.txt",
        "a/../../escape.txt",
        "a\\..\\escape.txt",
        "nul\0.txt",
        "line\nbreak.txt",
        "/",
    ] {
        let err = route.map(bad).unwrap_err();
        assert!(!err.is_transient(), "{bad:?}: {err}");
    }
    // An absolute-looking key is taken as relative to RemoteDirectory.
    let p = route.map("/etc/passwd").unwrap();
    c.publish(&b"harmless"[..], Some(8), &p, Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(files_under(&local), ["etc/passwd"]);
    assert!(!s.chroot.join("escape.txt").exists() && !s.upload_dir.join("escape.txt").exists());
}

#[tokio::test]
async fn a_directory_without_write_permission_is_a_permanent_error() {
    let s = sshd();
    let mut c = connector(&partner_json("readonly"));
    let err = publish_bytes(&mut c, "denied.txt", b"no")
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("permission denied"),
        "{err}"
    );
    assert!(files_under(&s.readonly_dir).is_empty());
}

#[tokio::test]
async fn a_short_source_is_transient_and_leaves_no_file() {
    let (local, remote) = scratch_dir("short");
    let mut c = connector(&partner_json(&remote));
    let err = c
        .publish(
            &b"only ten b"[..],
            Some(100),
            &path("short.bin"),
            Overwrite::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LengthMismatch {
                expected: 100,
                got: 10
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        files_under(&local).is_empty(),
        "temporary file removed: {:?}",
        files_under(&local)
    );
    // The connection is still good for the next file.
    publish_bytes(&mut c, "next.txt", b"ok").await.unwrap();
    assert_eq!(c.connections_opened(), 1);
}

#[tokio::test]
async fn one_connection_carries_a_hundred_files() {
    let s = sshd();
    let (local, remote) = scratch_dir("reuse");
    let mut c = connector(&partner_json(&remote));
    for i in 0..100 {
        let body = format!("file number {i}\n");
        publish_bytes(&mut c, &format!("batch/{i:03}.txt"), body.as_bytes())
            .await
            .unwrap();
    }
    assert_eq!(c.connections_opened(), 1);
    let port = c.session().await.unwrap().local_addr().port();
    let files = files_under(&local);
    assert_eq!(files.len(), 100);
    assert_eq!(
        std::fs::read_to_string(local.join("batch/042.txt")).unwrap(),
        "file number 42\n"
    );
    // The server agrees: it saw one login and one SFTP session from our port, no other.
    let from_us = format!("from 127.0.0.1 port {port} ");
    let log = s.log();
    let logins = log
        .lines()
        .filter(|l| l.starts_with("Accepted publickey") && l.contains(&from_us));
    let sessions = log
        .lines()
        .filter(|l| l.starts_with("Starting session") && l.contains(&from_us));
    assert_eq!(
        (logins.count(), sessions.count()),
        (1, 1),
        "sshd log:\n{log}"
    );
}

#[tokio::test]
async fn connect_and_handshake_are_bounded_in_time() {
    // A server that accepts TCP and never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (sock, _) = silent.accept().await.unwrap();
            held.push(sock);
        }
    });
    let mut v = partner_json("upload");
    v["Port"] = json!(port);
    let tuning = Tuning {
        connect_timeout: Duration::from_millis(500),
        ..Tuning::default()
    };
    let started = std::time::Instant::now();
    let err = Connector::new(partner(&v), tuning)
        .session()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();

    // Nothing listening: refused at once, transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    v["Port"] = json!(closed.local_addr().unwrap().port());
    drop(closed);
    let err = Connector::new(partner(&v), Tuning::default())
        .session()
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[test]
fn config_errors_name_the_field_and_never_echo_secrets() {
    let s = sshd();
    let base = partner_json("upload");
    let check = |edit: &dyn Fn(&mut Value), field: &str| {
        let mut v = base.clone();
        edit(&mut v);
        let err = Partner::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(err.contains(field), "expected {field} in {err:?}");
        for secret in [
            s.keys.passphrase.as_str(),
            "hunter2-secret",
            s.keys.ed25519.lines().nth(2).unwrap(),
        ] {
            assert!(!err.contains(secret), "secret echoed in {err:?}");
        }
    };
    check(
        &|v| {
            v.as_object_mut().unwrap().remove("Host");
        },
        "Host",
    );
    check(&|v| v["Port"] = json!(70000), "Port");
    check(
        &|v| {
            v.as_object_mut().unwrap().remove("Username");
        },
        "Username",
    );
    check(
        &|v| {
            v.as_object_mut().unwrap().remove("PrivateKey");
        },
        "PrivateKey",
    );
    check(&|v| v["Password"] = json!(12345), "Password");
    check(
        &|v| v["PrivateKey"] = json!("hunter2-secret not a key"),
        "PrivateKey",
    );
    check(
        &|v| v["PrivateKey"] = json!(s.keys.ed25519_encrypted),
        "PrivateKeyPassphrase",
    );
    check(
        &|v| {
            v["PrivateKey"] = json!(s.keys.ed25519_encrypted);
            v["PrivateKeyPassphrase"] = json!("hunter2-secret");
        },
        "PrivateKeyPassphrase",
    );
    check(
        &|v| {
            v.as_object_mut().unwrap().remove("TrustedHostKeys");
        },
        "TrustedHostKeys",
    );
    check(&|v| v["TrustedHostKeys"] = json!([]), "TrustedHostKeys");
    check(
        &|v| v["TrustedHostKeys"] = json!(["hunter2-secret"]),
        "TrustedHostKeys",
    );
    check(&|v| v["Hostname"] = json!("typo"), "Hostname");
    let err = Partner::from_json("{\"Password\": \"hunter2-secret")
        .unwrap_err()
        .to_string();
    assert!(err.contains("JSON") && !err.contains("hunter2"), "{err}");

    // Debug output redacts the password and the key.
    let mut v = base.clone();
    v["Password"] = json!("hunter2-secret");
    let p = partner(&v);
    let debug = format!("{p:?}");
    assert!(
        debug.contains("<redacted>")
            && !debug.contains("hunter2")
            && !debug.contains("PRIVATE KEY"),
        "{debug}"
    );
    assert_eq!(p.port, s.port);

    // Defaults: port 22, RemoteDirectory ".".
    let mut v = base.clone();
    v.as_object_mut().unwrap().remove("Port");
    v.as_object_mut().unwrap().remove("RemoteDirectory");
    let p = partner(&v);
    assert_eq!((p.port, p.remote_directory.as_str()), (22, "."));
}

/// The SFTP channels sshd started for the connection from local `port`.
fn sftp_channels_from_port(port: u16) -> usize {
    let s = testkit::sshd();
    s.sessions_from_port(&s.log(), port)
}

#[tokio::test]
async fn a_large_file_is_written_in_stripes_over_several_channels_and_arrives_intact() {
    const LEN: u64 = 40 * 1024 * 1024 + 12_345;
    let (local, remote) = scratch_dir("striped");
    let (_tmp, file, expected) = noise_file(7, LEN);
    let tuning = Tuning {
        stripes: 4,
        stripe_min_bytes: 8 * 1024 * 1024,
        ..Tuning::default()
    };
    let mut c = Connector::new(partner(&partner_json(&remote)), tuning);
    let source = forward::FileRanges::new(&file).await.unwrap();
    let done = c
        .publish_ranges(&source, &path("in/striped.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.bytes, LEN);
    let on_disk = sha256_of_reader(std::fs::File::open(local.join("in/striped.bin")).unwrap());
    assert_eq!(on_disk, expected);
    assert_eq!(
        files_under(&local),
        ["in/striped.bin"],
        "no temporary file left"
    );
    let port = c.session().await.unwrap().local_addr().port();
    assert_eq!(
        sftp_channels_from_port(port),
        4,
        "four SFTP channels on one connection"
    );

    // A small file on the same connection: one stripe, no new channel.
    let (_tmp2, small, small_sha) = noise_file(8, 100_000);
    let source = forward::FileRanges::new(&small).await.unwrap();
    c.publish_ranges(&source, &path("in/small.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        sha256_of_reader(std::fs::File::open(local.join("in/small.bin")).unwrap()),
        small_sha
    );
    assert_eq!(sftp_channels_from_port(port), 4, "channels are reused");
    assert_eq!(c.connections_opened(), 1);
}

#[tokio::test]
async fn when_the_server_refuses_more_channels_the_file_still_arrives_over_fewer() {
    // testkit's sshd allows MaxSessions 16 per connection; ask for 24.
    const LEN: u64 = 24 * 1024 * 1024;
    let (local, remote) = scratch_dir("refused");
    let (_tmp, file, expected) = noise_file(9, LEN);
    let tuning = Tuning {
        stripes: 24,
        stripe_min_bytes: 1024 * 1024,
        ..Tuning::default()
    };
    let mut c = Connector::new(partner(&partner_json(&remote)), tuning);
    let source = forward::FileRanges::new(&file).await.unwrap();
    let done = c
        .publish_ranges(&source, &path("refused.bin"), Overwrite::Overwrite)
        .await
        .unwrap();
    assert_eq!(done.bytes, LEN);
    assert_eq!(
        sha256_of_reader(std::fs::File::open(local.join("refused.bin")).unwrap()),
        expected
    );
    let port = c.session().await.unwrap().local_addr().port();
    assert_eq!(sftp_channels_from_port(port), 16, "as many as sshd grants");
}

#[test]
fn parallelism_in_the_partner_json_is_checked() {
    let mut v = partner_json("upload");
    v["Parallelism"] = serde_json::json!(8);
    assert_eq!(partner(&v).parallelism, Some(8));
    for bad in [
        serde_json::json!(0),
        serde_json::json!(17),
        serde_json::json!("four"),
    ] {
        v["Parallelism"] = bad;
        let err = Partner::from_json(&v.to_string()).unwrap_err().to_string();
        assert!(
            err.contains("Parallelism") && err.contains("1 to 16"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn many_files_go_out_at_once_over_several_channels_each_with_its_own_result() {
    let (local, remote) = scratch_dir("many");
    let tmp = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        stripes: 4,
        stripe_min_bytes: 1024 * 1024,
        ..Tuning::default()
    };
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for i in 0..120u64 {
        let len = if i == 7 {
            3 * 1024 * 1024 + 5
        } else {
            1000 + i * 37
        };
        let file = tmp.path().join(format!("f{i}"));
        std::io::copy(
            &mut Noise::new(i, len),
            &mut std::fs::File::create(&file).unwrap(),
        )
        .unwrap();
        let name = format!("many/{}/f{i:03}.bin", i % 3);
        files.push((forward::FileRanges::new(&file).await.unwrap(), path(&name)));
        expected.push((name, sha256_of_reader(Noise::new(i, len))));
    }
    // One source shrinks after it was measured: that file fails, alone.
    std::fs::write(tmp.path().join("f50"), b"short").unwrap();

    let mut c = Connector::new(partner(&partner_json(&remote)), tuning);
    let results = c.publish_all(&files, Overwrite::Overwrite).await.unwrap();
    assert_eq!(results.len(), 120);
    for (i, (result, (name, sha))) in results.iter().zip(&expected).enumerate() {
        if i == 50 {
            let e = result.as_ref().unwrap_err();
            assert_eq!(e.class(), ErrorClass::Transient, "{e}");
            assert!(!local.join(name).exists(), "no partial file under {name}");
            continue;
        }
        let done = result.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(done.remote_path.ends_with(name.as_str()), "{done:?}");
        assert_eq!(
            &sha256_of_reader(std::fs::File::open(local.join(name)).unwrap()),
            sha,
            "{name}"
        );
    }
    assert_eq!(files_under(&local).len(), 119, "no temporary file left");
    let port = c.session().await.unwrap().local_addr().port();
    assert_eq!(c.connections_opened(), 1);
    assert_eq!(
        sftp_channels_from_port(port),
        4,
        "the small files shared four channels of one connection"
    );
}

#[tokio::test]
async fn a_server_that_allows_two_sessions_still_takes_a_batch_over_two_channels() {
    // Its own sshd with MaxSessions 2: the new connection asks for 8 channels at once.
    let limited = testkit::sshd_limited(2, "10:30:100").unwrap_or_else(|e| panic!("{e}"));
    let (local, remote) = limited.scratch_dir("two-sessions");
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..10 {
        let file = tmp.path().join(format!("f{i}"));
        std::fs::write(&file, format!("file {i}\n")).unwrap();
        let source = forward::FileRanges::new(&file).await.unwrap();
        files.push((source, path(&format!("f{i}.txt"))));
    }
    let tuning = Tuning {
        stripes: 8,
        ..Tuning::default()
    };
    let mut c = Connector::new(partner(&limited.partner_json(&remote)), tuning);
    let results = c.publish_all(&files, Overwrite::Overwrite).await.unwrap();
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "f{i}: {r:?}");
        assert_eq!(
            std::fs::read_to_string(local.join(format!("f{i}.txt"))).unwrap(),
            format!("file {i}\n")
        );
    }
    let port = c.session().await.unwrap().local_addr().port();
    assert_eq!(limited.sessions_from_port(&limited.log(), port), 2);
    assert_eq!(c.connections_opened(), 1);
}
