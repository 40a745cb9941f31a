//! Large S3 objects are sent in stripes: several SFTP channels of one SSH connection, each
//! writing its own byte range read by its own ranged GET, with the same bytes at the partner.

mod util;

use testkit::{scratch_dir, sshd};
use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_is_read_by_ranges_and_written_over_several_channels() {
    let aws = aws().await;
    let bucket = aws.bucket("striped").await;
    let (local, remote) = scratch_dir("striped");
    let secret = aws.secret(&partner_json(&remote)).await;
    let body = noise(33 * 1024 * 1024 + 777);
    aws.put(&bucket, "big/object.bin", &body).await;

    let mut forwarder = aws.forwarder(&secret, &[("SFTP_FORWARD_PARALLELISM", "4")]);
    let log_before = sshd().log().len();
    let response = forwarder
        .handle(
            &sqs_event(&[("m-big".into(), s3_body(&bucket, "big/object.bin"))]),
            None,
        )
        .await
        .unwrap();
    assert!(failures(&response).is_empty(), "{response}");
    let on_disk = std::fs::read(local.join("big/object.bin")).unwrap();
    assert!(on_disk == body, "the bytes at the partner differ");

    // The connection's sessions: one per stripe (33 MiB / 8 MiB per stripe → 4).
    let log = sshd().log()[log_before..].to_owned();
    let logins = sshd().logins(&log);
    let [(_, port)] = logins[..] else {
        panic!("one login expected: {log}")
    };
    let sessions = sshd().sessions_from_port(&log, port);
    assert_eq!(sessions, 4, "{log}");
}
