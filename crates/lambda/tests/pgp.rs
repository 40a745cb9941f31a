//! A `Pgp` partner (issue 18) through the handler: an S3 object (moto) lands on the real sshd
//! encrypted, under its route path plus the suffix, `gpg` decrypts it to the object's bytes, and
//! the receipt records both sizes and still skips a repeated event.

mod util;

use serde_json::{json, Value};
use sftp_forward_core::receipt::{self, Receipt};
use testkit::gpg::partner_key;
use util::*;

async fn run<S, K>(f: &mut sftp_forward_core::Forwarder<S, K>, bucket: &str, key: &str) -> Value
where
    S: sftp_forward_core::source::ObjectStore,
    K: sftp_forward_core::secret::SecretSource,
{
    let event: Value = serde_json::from_str(&s3_body(bucket, key)).unwrap();
    f.handle(&event, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_lands_encrypted_and_its_receipt_records_both_sizes() {
    let (gpg, public) = partner_key("Lambda partner <l@partner.example>");
    let bed = Bed::start("pgp").await;
    let (aws, bucket, local) = (&bed.aws, &bed.bucket, &bed.local);
    let mut json = partner_json(&bed.remote);
    json["Pgp"] = json!({ "PublicKeys": [public], "Compression": "zlib" });
    aws.set_secret(&bed.secret, &json).await;
    let data = noise(5 * 1024 * 1024 + 3);
    aws.put(bucket, "in/pay.csv", &data).await;
    let mut f = bed.forwarder(&[]);

    let out = run(&mut f, bucket, "in/pay.csv").await;
    assert_eq!(out["delivered"], 1, "{out}");
    assert_eq!(
        left_in(local),
        ["in/pay.csv.pgp"],
        "only the encrypted file, with its suffix"
    );
    let landed = local.join("in/pay.csv.pgp");
    assert!(gpg.decrypt(&landed) == data, "gpg gives the object's bytes");

    let tags = aws.tags(bucket, "in/pay.csv").await;
    let r = Receipt::from_tags(&tags).expect("a receipt");
    let on_disk = std::fs::metadata(&landed).unwrap().len();
    assert_eq!(
        r.sent_bytes,
        Some(on_disk),
        "the receipt records the bytes sent: {tags:?}"
    );
    assert_ne!(on_disk, data.len() as u64);
    assert!(
        r.remote_path.ends_with("in/pay.csv.pgp"),
        "{}",
        r.remote_path
    );
    assert!(tags.iter().any(|(k, _)| k == receipt::SENT_BYTES));

    let again = run(&mut f, bucket, "in/pay.csv").await;
    assert_eq!(
        again["skipped"], 1,
        "a repeated event is skipped by the receipt: {again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_key_fails_the_record_permanently_naming_the_field() {
    let bed = Bed::start("pgpbad").await;
    let gpg = testkit::gpg::Gpg::new();
    let fpr = gpg.generate(&[
        "--faked-system-time",
        "20200101T000000!",
        "--quick-gen-key",
        "Old <old@partner.example>",
        "default",
        "default",
        "1d",
    ]);
    let mut json = partner_json(&bed.remote);
    json["Pgp"] = json!({ "PublicKeys": [gpg.public_key(&fpr)] });
    bed.aws.set_secret(&bed.secret, &json).await;
    bed.aws.put(&bed.bucket, "a.csv", b"1,2\n").await;
    let mut f = bed.forwarder(&[]);
    let event: Value = serde_json::from_str(&s3_body(&bed.bucket, "a.csv")).unwrap();
    let e = f.handle(&event, None).await.unwrap_err().to_string();
    assert!(e.contains("permanent"), "{e}");
    assert!(
        e.contains("Pgp.PublicKeys: entry 0 (key ") && e.contains("expired on 2020-01-02"),
        "{e}"
    );
    assert!(left_in(&bed.local).is_empty(), "nothing sent");
}

/// The SHA-256 of `bytes`, lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_files_go_direct_with_markers_and_a_control_file_describing_the_ciphertext() {
    let (gpg, public) = partner_key("Marker partner <m@partner.example>");
    let bed = Bed::start("pgpmark").await;
    let (aws, bucket, local) = (&bed.aws, &bed.bucket, &bed.local);
    let mut json = partner_json(&bed.remote);
    json["Pgp"] = json!({ "PublicKeys": [public] });
    json["Upload"] = json!("direct");
    json["DoneMarker"] = json!({ "Suffix": ".ok", "Content": "summary" });
    json["ControlFile"] = json!({ "Name": "ctl/{now:%Y%m%d%H%M%S%3f}.ctl", "Content": "summary" });
    aws.set_secret(&bed.secret, &json).await;
    let objects = [("in/a.csv", noise(300_001)), ("in/b.csv", noise(17))];
    let mut messages = Vec::new();
    for (i, (key, data)) in objects.iter().enumerate() {
        aws.put(bucket, key, data).await;
        messages.push((format!("m-{i}"), s3_body(bucket, key)));
    }
    let mut f = bed.forwarder(&[]);

    let response = f.handle(&sqs_event(&messages), None).await.unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    let left = left_in(local);
    assert_eq!(
        left.len(),
        5,
        "two files, two markers, one control file: {left:?}"
    );
    let mut listed = Vec::new();
    for (key, data) in &objects {
        let sent = std::fs::read(local.join(format!("{key}.pgp"))).unwrap();
        assert!(
            gpg.decrypt(&local.join(format!("{key}.pgp"))) == *data,
            "{key}"
        );
        let name = format!("{}.pgp", key.rsplit('/').next().unwrap());
        let marker = std::fs::read_to_string(local.join(format!("{key}.pgp.ok"))).unwrap();
        assert_eq!(
            marker,
            format!("{name} {} {}\n", sent.len(), sha256_hex(&sent)),
            "the marker describes the ciphertext on disk"
        );
        listed.push(format!("{key}.pgp {} {}", sent.len(), sha256_hex(&sent)));
    }
    let control = left
        .iter()
        .find(|n| n.starts_with("ctl/"))
        .expect("a control file");
    let text = std::fs::read_to_string(local.join(control)).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines, listed,
        "the control file lists the sent names, sizes and digests"
    );
}
