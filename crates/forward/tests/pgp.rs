//! `Pgp` partners (issue 18): files encrypted on the way out land on the real sshd and Debian's
//! `gpg` decrypts them, with the matching private key, to the source's bytes; bad keys are
//! permanent config errors naming `Pgp.PublicKeys` and the entry; the encryption streams in
//! bounded memory.

mod util;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use forward::{ConfigError, Overwrite, Partner};
use serde_json::{json, Value};
use testkit::gpg::{key_pair, partner_key};
use testkit::{noise, scratch_dir};
use util::*;

/// RSS is the whole process's: the tests that hold MiBs of test data run one at a time, so the
/// memory test measures its own stream only.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn with_pgp(json: &mut Value, pgp: Value) -> Partner {
    json["Pgp"] = pgp;
    partner(json)
}

fn pgp_error(pgp: Value) -> String {
    let mut json = partner_json("upload");
    json["Pgp"] = pgp;
    match Partner::from_json(&json.to_string()) {
        Ok(_) => panic!("accepted {}", json["Pgp"]),
        Err(e @ ConfigError::Field { .. }) => e.to_string(),
        Err(e) => panic!("not a field error: {e}"),
    }
}

/// Publishes `data` encrypted as `name` (+ the suffix) and returns where it landed locally.
async fn publish_encrypted(
    json: &Value,
    local: &Path,
    name: &str,
    data: Vec<u8>,
) -> (PathBuf, u64) {
    let partner = partner(json);
    let pgp = partner.pgp.clone().expect("Pgp set");
    let mut c = forward::Connector::new(partner, forward::Tuning::default());
    let len = data.len() as u64;
    let stream = pgp.encrypt(std::io::Cursor::new(data), Some(len), name);
    let plain = stream.plain_bytes();
    let remote = pgp.remote_path(&path(name)).unwrap();
    let published = c
        .publish(stream, None, &remote, Overwrite::Overwrite)
        .await
        .expect("published");
    c.close().await;
    assert_eq!(
        plain.load(Ordering::Relaxed),
        len,
        "every plaintext byte read"
    );
    let landed = local.join(remote.file_name());
    let on_disk = std::fs::metadata(&landed).unwrap().len();
    assert_eq!(
        published.bytes, on_disk,
        "the size checked is what was sent"
    );
    assert!(published.remote_path.ends_with(remote.file_name()));
    (landed, on_disk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_file_decrypts_with_gpg_to_the_source_bytes() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (alice, alice_pub) = partner_key("Partner A <a@partner.example>");
    let (bob, bob_pub) = partner_key("Partner B <b@partner.example>");
    let (local, remote) = scratch_dir("pgp");
    let mut json = partner_json(&remote);
    let data = noise(3 * 1024 * 1024 + 777, 18);
    with_pgp(&mut json, json!({ "PublicKeys": [alice_pub, bob_pub] }));
    let started = Instant::now();
    let (landed, sent) = publish_encrypted(&json, &local, "report.csv", data.clone()).await;
    eprintln!("3 MiB encrypted and published in {:?}", started.elapsed());
    assert_eq!(
        landed.file_name().unwrap(),
        "report.csv.pgp",
        "default suffix"
    );
    assert!(
        sent > data.len() as u64,
        "uncompressed: ciphertext is longer"
    );
    assert_eq!(files_under(&local), ["report.csv.pgp"], "no temp file left");
    assert!(
        alice.decrypt(&landed) == data,
        "gpg (recipient A) gives the source bytes"
    );
    assert!(
        bob.decrypt(&landed) == data,
        "gpg (recipient B) gives the source bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_files_decrypt_too_and_the_suffix_is_configurable() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (gpg, public) = partner_key("Partner Z <z@partner.example>");
    let (local, remote) = scratch_dir("pgpz");
    // Half noise, half zeros: compression has something to remove.
    let mut data = noise(2 * 1024 * 1024, 7);
    data.resize(4 * 1024 * 1024, 0);
    for (compression, suffix, name) in [("zip", ".gpg", "a.bin"), ("zlib", "", "b.bin")] {
        let mut json = partner_json(&remote);
        with_pgp(
            &mut json,
            json!({ "PublicKeys": [public], "Compression": compression, "Suffix": suffix }),
        );
        let (landed, sent) = publish_encrypted(&json, &local, name, data.clone()).await;
        assert_eq!(
            landed.file_name().unwrap().to_str().unwrap(),
            format!("{name}{suffix}")
        );
        assert!(
            sent < 3 * 1024 * 1024,
            "{compression}: {sent} bytes for 4 MiB half zeros"
        );
        assert!(
            gpg.decrypt(&landed) == data,
            "{compression}: gpg gives the source bytes"
        );
    }
}

#[test]
fn bad_keys_are_permanent_errors_naming_the_field_and_entry() {
    let (_good, good) = partner_key("Good <good@partner.example>");
    let gen = |uid, algo, usage, expire| ["--quick-gen-key", uid, algo, usage, expire];
    let past = "20200101T000000!";
    let old = gen("Old <old@partner.example>", "default", "default", "1d");
    let (_, _, expired) = key_pair(&[&["--faked-system-time", past][..], &old].concat());
    let (_, _, sign_only) = key_pair(&gen(
        "Signer <s@partner.example>",
        "ed25519",
        "sign",
        "never",
    ));
    let (revoked_gpg, revoked) = {
        let (gpg, fpr, _) = key_pair(&gen(
            "Gone <gone@partner.example>",
            "default",
            "default",
            "never",
        ));
        // gpg writes a revocation certificate for every new key; importing it revokes the key.
        let rev = gpg.home().join(format!("openpgp-revocs.d/{fpr}.rev"));
        let cert = std::fs::read_to_string(&rev)
            .unwrap()
            .replace(":-----BEGIN", "-----BEGIN");
        std::fs::write(&rev, cert).unwrap();
        gpg.run(&["--import", rev.to_str().unwrap()]);
        let public = gpg.public_key(&fpr);
        (gpg, public)
    };
    let private = {
        let (gpg, fpr, _) = key_pair(&gen(
            "Secret <x@partner.example>",
            "default",
            "default",
            "never",
        ));
        String::from_utf8(gpg.run(&["--armor", "--export-secret-keys", &fpr])).unwrap()
    };
    drop(revoked_gpg);
    let cases: [(&str, Value, &str); 7] = [
        (
            "expired",
            json!({ "PublicKeys": [good, expired] }),
            "entry 1 (key ",
        ),
        (
            "sign-only",
            json!({ "PublicKeys": [sign_only] }),
            "has no encryption-capable (sub)key valid now",
        ),
        ("revoked", json!({ "PublicKeys": [revoked] }), "is revoked"),
        (
            "private",
            json!({ "PublicKeys": [private] }),
            "entry 0 is a private key",
        ),
        (
            "not armored",
            json!({ "PublicKeys": ["mQINBF0AAAAB"] }),
            "entry 0 is not an ASCII-armored",
        ),
        ("empty", json!({ "PublicKeys": [] }), "is required"),
        (
            "number",
            json!({ "PublicKeys": [good, 5] }),
            "entry 1 is not a string",
        ),
    ];
    for (what, pgp, expected) in cases {
        let e = pgp_error(pgp);
        assert!(
            e.starts_with("partner config field Pgp.PublicKeys: "),
            "{what}: {e}"
        );
        assert!(e.contains(expected), "{what}: {e}");
        // Key material (armored bodies start mQ, mD, lF, lQ) is never quoted.
        let quoted = ["mQ", "mD", "lF", "lQ"].iter().any(|b| e.contains(b));
        assert!(!quoted && e.len() < 300, "{what} quotes the key: {e}");
    }
    let e = pgp_error(
        json!({ "PublicKeys": [good.clone()] })
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("Compression".into(), json!("bzip2"));
                Value::Object(o)
            })
            .unwrap(),
    );
    assert!(
        e.contains("Pgp.Compression") && e.contains("none, zip or zlib"),
        "{e}"
    );
    let e = pgp_error(json!({ "PublicKeys": [good], "Suffix": "/x" }));
    assert!(e.contains("Pgp.Suffix"), "{e}");
    let e = pgp_error(json!({ "PublicKeys": [expired] }));
    assert!(e.contains("expired on 2020-01-02"), "{e}");
}

/// Resident set size of this process, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_stream_is_encrypted_in_bounded_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (_gpg, public) = partner_key("Big <big@partner.example>");
    let mut json = partner_json("upload");
    let pgp = with_pgp(
        &mut json,
        json!({ "PublicKeys": [public], "Compression": "zip" }),
    )
    .pgp
    .unwrap();
    const LEN: u64 = 256 * 1024 * 1024;
    let before = rss_bytes();
    let mut stream = pgp.encrypt(Noise::new(99, LEN), Some(LEN), "big.bin");
    let plain = stream.plain_bytes();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            peak = peak.max(rss_bytes());
            tokio::select! {
                _ = &mut stopped => return peak,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    });
    let started = Instant::now();
    let sent = tokio::io::copy(&mut stream, &mut tokio::io::sink())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    stop.send(()).unwrap();
    let peak = sampler.await.unwrap();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "256 MiB encrypted (zip) in {elapsed:?} ({:.0} MB/s), {sent} bytes out, RSS growth {} KiB",
        LEN as f64 / elapsed.as_secs_f64() / 1e6,
        growth / 1024
    );
    assert_eq!(plain.load(Ordering::Relaxed), LEN);
    assert!(sent > LEN, "noise does not compress");
    assert!(
        growth < 24 * 1024 * 1024,
        "RSS grew by {growth} bytes for a 256 MiB stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_source_fails_the_stream_instead_of_ending_it() {
    let (_gpg, public) = partner_key("Short <short@partner.example>");
    let mut json = partner_json("upload");
    let pgp = with_pgp(&mut json, json!({ "PublicKeys": [public] }))
        .pgp
        .unwrap();
    let mut stream = pgp.encrypt(std::io::Cursor::new(vec![7u8; 1000]), Some(5000), "s.bin");
    let e = tokio::io::copy(&mut stream, &mut tokio::io::sink())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("produced 1000 bytes but 5000 were expected"),
        "{e}"
    );
}
