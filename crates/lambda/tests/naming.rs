//! Names the partner asks for (the partner JSON's `RemotePathTemplate`, `TimeZone`,
//! `MaxNameLength`), on real parts: S3 and Secrets Manager on the moto server, the partner a real
//! sshd. Expected names are worked out with the system's `date` and `sha256sum`, not with the
//! code under test.

mod util;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use testkit::scratch_dir;
use util::*;

/// `cmd` run through `sh -c`, its output trimmed.
fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn direct_event(bucket: &str, key: &str) -> serde_json::Value {
    serde_json::from_str(&s3_body(bucket, key)).unwrap()
}

#[tokio::test]
async fn a_file_lands_under_the_partners_name_in_its_time_zone_with_the_version_hash() {
    let aws = aws().await;
    let bucket = aws.bucket("naming").await;
    let (local, remote) = scratch_dir("naming");
    let mut partner = partner_json(&remote);
    partner["RemotePathTemplate"] =
        json!("in/{stem|upper}_{modified:%Y%m%d%H%z}_{version:8}.{ext|upper}");
    partner["TimeZone"] = json!("America/Denver");
    partner["MaxNameLength"] = json!(40);
    let secret = aws.secret(&partner).await;
    // The function's own template is overridden by the partner's; its strip prefix still applies.
    let mut f = aws.forwarder(
        &secret,
        &[
            ("SFTP_FORWARD_REMOTE_PATH_TEMPLATE", "ignored/{key}"),
            ("SFTP_FORWARD_STRIP_PREFIX", "exports/"),
        ],
    );

    let key = "exports/daily/payments.csv";
    let body = b"id,amount\n1,9.99\n";
    let put = aws.put(&bucket, key, body).await;
    let etag = put.e_tag().unwrap().trim_matches('"').to_owned();
    let head = aws
        .s3
        .head_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let modified = head.last_modified().unwrap().secs();

    // The event carries no ETag: the name waits for GetObject's Last-Modified and ETag.
    let response = f.handle(&direct_event(&bucket, key), None).await.unwrap();
    assert_eq!(response["delivered"], 1, "{response}");

    let denver = sh(&format!(
        "TZ=America/Denver date -d @{modified} +%Y%m%d%H%z"
    ));
    assert!(
        denver.ends_with("-0700") || denver.ends_with("-0600"),
        "{denver}"
    );
    let hash = sh(&format!("printf %s '{etag}' | sha256sum"));
    let name = format!("PAYMENTS_{denver}_{}.CSV", &hash[..8]);
    assert_eq!(left_in(&local.join("in")), std::slice::from_ref(&name));
    assert_eq!(std::fs::read(local.join("in").join(&name)).unwrap(), body);
    let tags = aws.tags(&bucket, key).await;
    assert!(
        tags.iter()
            .any(|(k, v)| k == "sftp-forward-path" && *v == format!("{remote}/in/{name}")),
        "{tags:?}"
    );

    // A key whose name would be longer than MaxNameLength fails permanently, naming the name.
    let long = "exports/daily/a-name-that-is-far-too-long.csv";
    aws.put(&bucket, long, body).await;
    let err = f
        .handle(&direct_event(&bucket, long), None)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("A-NAME-THAT-IS-FAR-TOO-LONG_")
            && message.contains("over the partner's MaxNameLength of 40"),
        "{message}"
    );
    assert_eq!(left_in(&local.join("in")), [name]);
}

#[tokio::test]
async fn a_template_with_the_delivery_time_does_not_deliver_a_repeated_event_again() {
    let aws = aws().await;
    let bucket = aws.bucket("naming-now").await;
    let (local, remote) = scratch_dir("naming-now");
    let mut partner = partner_json(&remote);
    partner["RemotePathTemplate"] = json!("{now:%Y%m%d%H%M%S%3f}_{basename}");
    let secret = aws.secret(&partner).await;
    let mut f = aws.forwarder(&secret, &[]);
    aws.put(&bucket, "a.csv", b"a").await;

    let day = || {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        sh(&format!("date -u -d @{secs} +%Y%m%d"))
    };
    let before = day();
    // The second delivery would have a new name; the receipt says these bytes went already.
    for outcome in ["delivered", "skipped"] {
        let response = f
            .handle(&direct_event(&bucket, "a.csv"), None)
            .await
            .unwrap();
        assert_eq!(response[outcome], 1, "{response}");
    }
    let after = day();
    let names = left_in(&local);
    assert_eq!(names.len(), 1, "delivered once: {names:?}");
    let name = &names[0];
    assert_eq!(name.len(), "20240229235958123_a.csv".len(), "{name}");
    assert!(name.ends_with("_a.csv"), "{name}");
    assert!(
        name.starts_with(&before) || name.starts_with(&after),
        "{name} not of {before} (UTC)"
    );
}
