//! Round trips of a cold connection: a first striped publish through a link with a long round
//! trip (200 ms), timed, so a change that makes a new connection wait once more is caught.
//! With so long a round trip the file's bytes and the machine's load are noise: the elapsed
//! time divided by the round trip is the number of round trips waited for.

mod util;

use std::time::{Duration, Instant};

use forward::{Connector, Overwrite, Session, Tuning};
use testkit::delay::DelayProxy;
use testkit::{scratch_dir, sshd};
use util::*;

/// Each direction of the link.
const ONE_WAY: Duration = Duration::from_millis(100);
/// The link's round trip.
const RTT: Duration = Duration::from_millis(200);

/// Cold publishes timed; the best counts.
const ATTEMPTS: usize = 3;

/// Round trips a cold striped publish may take, connect to rename, on this link: 13.8 at best
/// with the SFTP channel set-up pipelined (INIT and `limits@openssh.com` together) and each extra
/// lane's CLOSE right behind its last WRITE; 15.3–15.4 before. The slack of under one round trip
/// is for a loaded machine (2 cores shared with builds).
const MAX_ROUND_TRIPS: f64 = 14.5;

fn link() -> DelayProxy {
    DelayProxy::start((sshd().host, sshd().port).into(), ONE_WAY)
}

fn round_trips(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() / RTT.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_striped_publish_waits_for_few_round_trips() {
    let link = link();
    let (local, remote) = scratch_dir("roundtrips");
    let mut json = partner_json(&remote);
    json["Port"] = serde_json::json!(link.addr().port());
    // Four stripes of a small file: every stripe's WRITEs fit in one channel window. The sweep
    // of stale temporary files (a directory listing, round trips of its own) is off: this
    // counts the connection and the publish.
    let tuning = Tuning {
        stripes: 4,
        stripe_min_bytes: 64 * 1024,
        stale_temp_after: Duration::ZERO,
        ..Tuning::default()
    };
    let (_tmp, file, expected) = noise_file(15, 4 * 64 * 1024 + 4_321);

    // What the connection itself costs (connect, key exchange, login, one SFTP channel): for
    // the report only, the bound below is on the whole publish.
    let started = Instant::now();
    let session = Session::open(&partner(&json), &tuning).await.unwrap();
    let open_rtts = round_trips(started.elapsed());
    session.close().await;

    // The best of a few: a round trip more shows in every attempt, a loaded machine in some.
    let mut best = f64::MAX;
    for attempt in 0..ATTEMPTS {
        let name = format!("cold-{attempt}.bin");
        let started = Instant::now();
        let mut c = Connector::new(partner(&json), tuning.clone());
        let source = forward::FileRanges::new(&file).await.unwrap();
        let done = c
            .publish_ranges(&source, &path(&name), Overwrite::Overwrite)
            .await
            .unwrap();
        let rtts = round_trips(started.elapsed());
        best = best.min(rtts);
        eprintln!("cold striped publish {attempt}: {rtts:.1} round trips");
        assert_eq!(done.bytes, 4 * 64 * 1024 + 4_321);
        assert_eq!(
            sha256_of_reader(std::fs::File::open(local.join(&name)).unwrap()),
            expected,
            "the partner has the exact bytes"
        );
        // It was striped: sshd started four SFTP sessions for the connection (the last login of
        // this test's sshd; the proxy's port is what sshd sees).
        let log = sshd().log();
        let (_, port) = *sshd().logins(&log).last().expect("sshd logged the login");
        assert_eq!(
            sshd().sessions_from_port(&log, port),
            4,
            "four SFTP channels wrote the file"
        );
        c.close().await;
    }
    eprintln!(
        "cold connection with one SFTP channel: {open_rtts:.1} round trips; \
         cold striped publish: best {best:.1} round trips (at most {MAX_ROUND_TRIPS})"
    );
    assert_eq!(
        files_under(&local).len(),
        ATTEMPTS,
        "no temporary file left: {:?}",
        files_under(&local)
    );
    assert!(
        best <= MAX_ROUND_TRIPS,
        "a cold striped publish took {best:.1} round trips of {RTT:?} at best, more than \
         {MAX_ROUND_TRIPS}: a step waits for a reply it need not wait for"
    );
}

/// A partner whose sshd has no `sftp` subsystem: `sshd -i` (inetd mode) on one connection
/// accepted from a listener bound here, with the shared sshd's host key and user but neither
/// `Subsystem sftp` nor `ForceCommand`. Returns the port. sshd ends with the connection (or with
/// this process, which holds the other end).
fn sshd_without_sftp(config_dir: &std::path::Path) -> u16 {
    let s = sshd();
    let host_key = s.host_key_pub_path.with_extension("");
    let config = config_dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "HostKey {}\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
             PubkeyAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n\
             Match User {}\n    ChrootDirectory {}\n",
            host_key.display(),
            s.user,
            s.chroot.display()
        ),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let out = conn.try_clone().unwrap();
        // If it cannot start, the client sees its connection closed and the test says so.
        let _ = std::process::Command::new("/usr/sbin/sshd")
            .args(["-i", "-e", "-f"])
            .arg(&config)
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(conn)))
            .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(out)))
            .stderr(std::process::Stdio::null())
            .status();
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_sftp_subsystem_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = sshd_without_sftp(dir.path());
    let mut json = partner_json("upload");
    json["Port"] = serde_json::json!(port);
    // Password login: this sshd has no authorized keys file.
    json.as_object_mut().unwrap().remove("PrivateKey");
    json["Password"] = serde_json::json!(sshd().password);
    let mut c = Connector::new(partner(&json), Tuning::default());
    let started = Instant::now();
    let err = publish_bytes(&mut c, "never.txt", b"never written")
        .await
        .expect_err("no SFTP without the subsystem");
    let message = format!("{err:#}");
    assert!(
        message.contains("sftp subsystem request was denied"),
        "the error names the refused subsystem: {message}"
    );
    // The account has no SFTP: no retry can help.
    assert!(matches!(err, forward::Error::SftpRefused { .. }), "{err:?}");
    assert!(!err.is_transient(), "{message}");
    assert!(
        started.elapsed() < Tuning::default().request_timeout,
        "the refusal is reported at once, not after a timeout ({:?})",
        started.elapsed()
    );
    c.close().await;
}
