//! `send` to a `Pgp` partner (issue 18): a local file and an S3 object land encrypted under
//! their name plus the suffix, and `gpg` decrypts them to the source's bytes.

#[allow(unused_imports)] // util re-exports what the other test binaries use
mod util;

use serde_json::json;
use testkit::gpg::partner_key;
use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_encrypts_a_local_file_and_an_s3_object_for_a_pgp_partner() {
    let (gpg, public) = partner_key("CLI partner <cli@partner.example>");
    let (aws, bucket, local, remote, secret) = setup("sendpgp").await;
    let mut partner = partner_json(&remote);
    partner["Pgp"] = json!({ "PublicKeys": [public], "Suffix": ".gpg" });
    aws.set_secret(&secret, &partner).await;

    let (dir, file) = secret_file(&partner);
    let path = dir.path().join("local.bin");
    let body = testkit::noise(700_000, 5);
    std::fs::write(&path, &body).unwrap();
    let run = sftp_forward(&["send", path.to_str().unwrap(), "--secret-file", &file]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(!local.join("local.bin").exists(), "never the plaintext");
    assert!(gpg.decrypt(&local.join("local.bin.gpg")) == body);

    aws.put(&bucket, "in/r.csv", &body).await;
    let url = format!("s3://{bucket}/in/r.csv");
    let run = sftp_forward(&["send", &url, "--secret-id", &secret, "--json"]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        run.json()["outcome"]["bytes"],
        body.len(),
        "the object's size"
    );
    assert!(gpg.decrypt(&local.join("in/r.csv.gpg")) == body);
}
