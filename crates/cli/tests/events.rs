//! `send --events BUS`: the operator's send publishes an S3 object's delivery event only when
//! asked, in the function's shape (against moto's EventBridge and the real sshd).

mod util;

use sha2::Digest;
use util::*;

#[tokio::test]
async fn send_publishes_the_delivery_event_only_when_asked() {
    let (aws, bucket, local, remote, secret) = setup("cli-events").await;
    let queue = aws.events_queue(&bucket).await;
    let body = b"id,amount\n1,2\n";
    aws.put(&bucket, "in/a.csv", body).await;
    let url = format!("s3://{bucket}/in/a.csv");

    let run = sftp_forward(&["send", &url, "--secret-id", &secret]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let run = sftp_forward(&["send", &url, "--secret-id", &secret, "--events", "default"]).await;
    assert_eq!(run.code, 0, "{run:#?}");

    // Both sends delivered; only the second published (the queue is read for a bounded while).
    let events = aws.receive(&queue, 2).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event: serde_json::Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(event["detail-type"], "SFTP Forward File Send Completed");
    let d = &event["detail"];
    assert_eq!(d["connector-id"], "sftp-forward-cli");
    assert_eq!(d["remote-path"], format!("{remote}/in/a.csv"));
    let on_disk = std::fs::read(local.join("in/a.csv")).unwrap();
    assert_eq!(on_disk, body);
    let digest: String = sha2::Sha256::digest(&on_disk)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(d["sha256"], digest);
}
