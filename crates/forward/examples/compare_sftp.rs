//! Quick side-by-side on this machine: our publisher vs OpenSSH `sftp` putting the same file to
//! the same loopback sshd (testkit's), alternating, 3 runs each; prints medians and ratios.
//! The full benchmark harness (rclone, S3, small files) is `docs/BENCHMARKS.md`'s job.
//!
//! ```sh
//! cargo run --release -p forward --example compare_sftp -- /var/tmp/bench-1g.bin
//! ```

use std::process::{Command, Stdio};
use std::time::Instant;

use forward::{Connector, Overwrite, Partner, RemotePath, Tuning};

const RUNS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = std::env::args().nth(1).ok_or("usage: compare_sftp FILE")?;
    let len = std::fs::metadata(&local)?.len();
    let s = testkit::sshd();
    let (dir, remote) = testkit::scratch_dir("bench");
    let partner = Partner::from_json(
        &serde_json::json!({
            "Host": "127.0.0.1", "Port": s.port, "Username": s.user,
            "PrivateKey": s.keys.ed25519, "TrustedHostKeys": [s.host_key_line],
            "RemoteDirectory": remote,
        })
        .to_string(),
    )?;
    let key_file = dir.join("../bench-key");
    std::fs::write(&key_file, &s.keys.ed25519)?;
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let known_hosts = dir.join("../bench-known-hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", s.port, s.host_key_line),
    )?;

    let mut ours = Vec::new();
    let mut sftp_default = Vec::new();
    let mut sftp_gcm = Vec::new();
    let mut connector = Connector::new(partner, Tuning::default());
    for _ in 0..RUNS {
        let file = tokio::fs::File::open(&local).await?;
        let started = Instant::now();
        connector
            .publish(
                file,
                Some(len),
                &RemotePath::parse("ours.bin")?,
                Overwrite::Overwrite,
            )
            .await?;
        ours.push(len as f64 / started.elapsed().as_secs_f64() / 1e6);
        for (cipher, out) in [
            (None, &mut sftp_default),
            (Some("aes128-gcm@openssh.com"), &mut sftp_gcm),
        ] {
            let started = Instant::now();
            let mut cmd = Command::new("sftp");
            cmd.args(["-q", "-b", "-", "-P", &s.port.to_string(), "-i"])
                .arg(&key_file)
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
                .args(["-o", "StrictHostKeyChecking=yes"]);
            if let Some(c) = cipher {
                cmd.args(["-o", &format!("Ciphers={c}")]);
            }
            let mut child = cmd
                .arg(format!("{}@127.0.0.1", s.user))
                .stdin(Stdio::piped())
                .spawn()?;
            use std::io::Write;
            writeln!(child.stdin.take().unwrap(), "put {local} {remote}/sftp.bin")?;
            assert!(child.wait()?.success(), "sftp failed");
            out.push(len as f64 / started.elapsed().as_secs_f64() / 1e6);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, d, g) = (
        median(&mut ours),
        median(&mut sftp_default),
        median(&mut sftp_gcm),
    );
    println!("{} MiB, {RUNS} runs each, median MB/s:", len >> 20);
    println!("  sftp-forward (aes128-gcm): {o:.0}");
    println!(
        "  sftp default cipher:       {d:.0}  (ours / sftp = {:.2})",
        o / d
    );
    println!(
        "  sftp aes128-gcm:           {g:.0}  (ours / sftp = {:.2})",
        o / g
    );
    Ok(())
}
