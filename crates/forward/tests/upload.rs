//! The partner's upload convention (`Upload` in the partner JSON) against the real sshd: where the
//! bytes are while they are written (seen on the partner's disk from inside the source, after the
//! file was opened), what is left at the end, and what a server that refuses renames needs.

mod util;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use forward::{Connector, Error, Overwrite, Tuning};
use serde_json::json;
use testkit::{sshd, sshd_styled, Style};
use tokio::io::{AsyncRead, ReadBuf};
use util::*;

/// A source of `data` that, when first read (the file is open on the partner by then), lists the
/// files under each of `watch`: what the partner's poller would see mid-upload.
struct Peeking {
    data: std::io::Cursor<Vec<u8>>,
    watch: Vec<PathBuf>,
    seen: Arc<Mutex<Option<Vec<String>>>>,
}

impl Peeking {
    fn new(data: &[u8], watch: &[&Path]) -> (Peeking, Arc<Mutex<Option<Vec<String>>>>) {
        let seen = Arc::new(Mutex::new(None));
        let source = Peeking {
            data: std::io::Cursor::new(data.to_vec()),
            watch: watch.iter().map(|p| p.to_path_buf()).collect(),
            seen: seen.clone(),
        };
        (source, seen)
    }
}

impl AsyncRead for Peeking {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let mut seen = this.seen.lock().unwrap();
        if seen.is_none() {
            let mut names = Vec::new();
            for dir in &this.watch {
                let base = dir.file_name().unwrap().to_string_lossy().into_owned();
                names.extend(files_under(dir).into_iter().map(|f| format!("{base}/{f}")));
            }
            *seen = Some(names);
        }
        let n = this.data.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

fn with_upload(remote: &str, upload: serde_json::Value) -> serde_json::Value {
    let mut json = partner_json(remote);
    json["Upload"] = upload;
    json
}

/// Publishes `body` as `name` through a [`Peeking`] source watching `watch`; returns what was
/// seen mid-upload.
async fn publish_peeking(
    c: &mut Connector,
    name: &str,
    body: &[u8],
    watch: &[&Path],
) -> Result<Vec<String>, Error> {
    let (source, seen) = Peeking::new(body, watch);
    c.publish(
        source,
        Some(body.len() as u64),
        &path(name),
        Overwrite::Overwrite,
    )
    .await?;
    let seen = seen.lock().unwrap().clone().expect("the source was read");
    Ok(seen)
}

#[tokio::test]
async fn suffix_writes_a_visible_partial_name_then_renames() {
    let (local, remote) = testkit::scratch_dir("up-suffix");
    let mut c = connector(&with_upload(
        &remote,
        json!({"Convention": "suffix", "Suffix": ".partial"}),
    ));
    let seen = publish_peeking(&mut c, "a.csv", b"suffix bytes\n", &[&local])
        .await
        .unwrap();
    let base = local.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let partial = seen[0].strip_prefix(&format!("{base}/")).unwrap();
    assert!(
        partial.starts_with("a.csv.") && partial.ends_with(".partial"),
        "{partial}"
    );
    assert_eq!(
        std::fs::read(local.join("a.csv")).unwrap(),
        b"suffix bytes\n"
    );
    assert_eq!(files_under(&local), ["a.csv"]);
}

#[tokio::test]
async fn staging_dir_writes_in_the_staging_directory_then_moves_into_place() {
    let (local, remote) = testkit::scratch_dir("up-final");
    let (staging, staging_remote) = testkit::scratch_dir("up-staging");
    let mut c = connector(&with_upload(
        &remote,
        json!({"Convention": "staging-dir", "Directory": staging_remote}),
    ));
    let seen = publish_peeking(&mut c, "in/b.csv", b"staged bytes\n", &[&local, &staging])
        .await
        .unwrap();
    let staging_base = staging.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(seen.len(), 1, "only the staged file mid-upload: {seen:?}");
    assert!(
        seen[0].starts_with(&format!("{staging_base}/.b.csv.")),
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read(local.join("in/b.csv")).unwrap(),
        b"staged bytes\n"
    );
    assert_eq!(files_under(&local), ["in/b.csv"]);
    assert!(files_under(&staging).is_empty(), "nothing left in staging");
}

#[tokio::test]
async fn a_server_that_refuses_renames_is_reached_with_direct() {
    let partner = sshd_styled(&Style::new().sftp_denied("rename,posix-rename")).unwrap();
    let (local, remote) = partner.scratch_dir("direct");
    let mut json = partner.partner_json(&remote);

    // The default convention: refused, with the setting to use named once.
    let err = publish_bytes(&mut connector(&json), "c.csv", b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RenameRefused { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains(r#""Upload": "direct""#), "{err}");
    assert!(files_under(&local).is_empty(), "{:?}", files_under(&local));

    // `direct`: written under the final name from the first byte, nothing renamed.
    json["Upload"] = json!("direct");
    let mut c = connector(&json);
    let seen = publish_peeking(&mut c, "c.csv", b"direct bytes\n", &[&local])
        .await
        .unwrap();
    let base = local.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(seen, [format!("{base}/c.csv")]);
    assert_eq!(
        std::fs::read(local.join("c.csv")).unwrap(),
        b"direct bytes\n"
    );

    // Replaced by a shorter file: truncated, not overlaid.
    publish_bytes(&mut c, "c.csv", b"short").await.unwrap();
    assert_eq!(std::fs::read(local.join("c.csv")).unwrap(), b"short");

    // A source that ends early: the partial file is removed from under the final name.
    let err = c
        .publish(
            &b"only this"[..],
            Some(1000),
            &path("d.csv"),
            Overwrite::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(files_under(&local), ["c.csv"], "{err}");

    // fail-if-exists still refuses an existing file.
    let err = c
        .publish(
            &b"again"[..],
            Some(5),
            &path("c.csv"),
            Overwrite::FailIfExists,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(std::fs::read(local.join("c.csv")).unwrap(), b"short");
}

#[tokio::test]
async fn the_sweep_knows_the_suffix_conventions_names_only() {
    let s = sshd();
    let (local, remote) = s.scratch_dir("up-sweep");
    let stale = local.join("old.csv.sfw-0badcafe.partial");
    let foreign = local.join("theirs.partial");
    for f in [&stale, &foreign] {
        std::fs::write(f, b"left").unwrap();
        let status = std::process::Command::new("touch")
            .args(["-d", "3 days ago"])
            .arg(f)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let json = with_upload(&remote, json!("suffix"));
    let tuning = Tuning {
        stale_temp_after: Duration::from_secs(3600),
        ..Tuning::default()
    };
    let mut c = Connector::new(partner(&json), tuning);
    publish_bytes(&mut c, "new.csv", b"new").await.unwrap();
    // The sweep runs beside the publish: bounded wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stale.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stale.exists(), "our stale partial file is swept");
    assert!(foreign.exists(), "a name that is not ours stays");
    assert!(local.join("new.csv").exists());
}

#[test]
fn upload_settings_are_checked_with_the_field_named() {
    let e = forward::Partner::from_json(
        &with_upload("upload", json!({"Convention": "staging-dir"})).to_string(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Upload.Directory"), "{e}");
}
