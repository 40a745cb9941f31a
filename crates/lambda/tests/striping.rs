//! Large S3 objects are sent in stripes: several SFTP channels of one SSH connection, each
//! writing its own byte range read by its own ranged GET, with the same bytes at the partner.

mod util;

use testkit::{scratch_dir, sshd};
use util::*;

/// Pseudo-random bytes (xorshift), so a misplaced stripe cannot go unnoticed.
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_is_read_by_ranges_and_written_over_several_channels() {
    let aws = aws().await;
    let bucket = aws.bucket("striped").await;
    let (local, remote) = scratch_dir("striped");
    let secret = aws.secret(&partner_json(&remote)).await;
    let body = noise(33 * 1024 * 1024 + 777, 0x9e37_79b9_7f4a_7c15);
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
    let port = log
        .lines()
        .find_map(|l| {
            l.split_once(&format!(
                "Accepted publickey for {} from 127.0.0.1 port ",
                sshd().user
            ))
        })
        .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
        .expect("a login");
    let sessions = log
        .lines()
        .filter(|l| l.contains("Starting session:") && l.contains(&format!(" port {port} id ")))
        .count();
    assert_eq!(sessions, 4, "{log}");
}
