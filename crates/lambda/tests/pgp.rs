//! A `Pgp` partner (issue 18) through the handler: an S3 object (moto) lands on the real sshd
//! encrypted, under its route path plus the suffix, `gpg` decrypts it to the object's bytes, and
//! the receipt records both sizes and still skips a repeated event.

mod util;

use serde_json::{json, Value};
use sftp_forward_lambda::receipt::{self, Receipt};
use testkit::gpg::partner_key;
use util::*;

async fn run<S, K>(f: &mut sftp_forward_lambda::Forwarder<S, K>, bucket: &str, key: &str) -> Value
where
    S: sftp_forward_lambda::source::ObjectStore,
    K: sftp_forward_lambda::secret::SecretSource,
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
