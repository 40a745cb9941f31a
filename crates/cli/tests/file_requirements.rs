//! `send` to partners with file requirements (issue 18): a `Pgp` partner gets a local file and an
//! S3 object encrypted under their name plus the suffix (`gpg` decrypts them to the source's bytes);
//! a `ControlFile` partner gets a control file per send (a send is a batch of one).

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

/// The one file in `dir`, with its text.
fn only_file(dir: &std::path::Path) -> (String, String) {
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    (files[0].file_name().to_string_lossy().into_owned(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_writes_the_partners_control_file_for_a_local_file_and_an_s3_object() {
    let (aws, bucket, local, remote, secret) = setup("sendctl").await;
    let mut partner = partner_json(&remote);
    partner["ControlFile"] = json!("ctl/{now:%Y%m%d%H%M%S%6f}.ctl");
    aws.set_secret(&secret, &partner).await;

    let (dir, file) = secret_file(&partner);
    let path = dir.path().join("local.bin");
    std::fs::write(&path, testkit::noise(1234, 6)).unwrap();
    let run = sftp_forward(&["send", path.to_str().unwrap(), "--secret-file", &file]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let (name, text) = only_file(&local.join("ctl"));
    assert!(name.ends_with(".ctl"), "{name}");
    assert_eq!(text, "local.bin 1234\n");
    std::fs::remove_file(local.join("ctl").join(&name)).unwrap();

    aws.put(&bucket, "in/r.csv", b"a,b\n").await;
    let url = format!("s3://{bucket}/in/r.csv");
    let run = sftp_forward(&["send", &url, "--secret-id", &secret]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(only_file(&local.join("ctl")).1, "in/r.csv 4\n");
}
