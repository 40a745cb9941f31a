//! Shared by the test binaries: the partner config for the test sshd and byte sources.
#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use forward::{Connector, Error, Overwrite, Partner, RemotePath, Tuning};
use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::sshd;
use tokio::io::{AsyncRead, ReadBuf};

/// The partner JSON for the test sshd, publishing under `remote_dir`.
pub fn partner_json(remote_dir: &str) -> Value {
    sshd().partner_json(remote_dir)
}

pub fn partner(v: &Value) -> Partner {
    Partner::from_json(&v.to_string()).expect("valid partner config")
}

pub fn connector(v: &Value) -> Connector {
    Connector::new(partner(v), Tuning::default())
}

pub fn path(p: &str) -> RemotePath {
    RemotePath::parse(p).unwrap()
}

pub async fn publish_bytes(
    c: &mut Connector,
    name: &str,
    data: &[u8],
) -> Result<forward::Published, Error> {
    c.publish(
        data,
        Some(data.len() as u64),
        &path(name),
        Overwrite::Overwrite,
    )
    .await
}

/// Files (not directories) under `dir`, recursively, relative names sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Deterministic pseudo-random bytes (xorshift64*), `len` of them, produced on demand.
pub struct Noise {
    state: u64,
    left: u64,
}

impl Noise {
    pub fn new(seed: u64, len: u64) -> Noise {
        Noise {
            state: seed | 1,
            left: len,
        }
    }
}

impl Noise {
    /// Fill as much of `out` as is left; 0 at the end.
    pub fn fill(&mut self, out: &mut [u8]) -> usize {
        let n = (out.len() as u64).min(self.left) as usize;
        for chunk in out[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.left -= n as u64;
        n
    }
}

impl AsyncRead for Noise {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.fill(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl std::io::Read for Noise {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.fill(out))
    }
}

/// A local file of `len` noise bytes (seed `seed`) in a fresh temp dir, with its sha256.
pub fn noise_file(seed: u64, len: u64) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.bin");
    let mut out = std::fs::File::create(&file).unwrap();
    std::io::copy(&mut Noise::new(seed, len), &mut out).unwrap();
    (dir, file, sha256_of_reader(Noise::new(seed, len)))
}

pub fn sha256_of_reader(mut r: impl std::io::Read) -> String {
    let mut h = Sha256::new();
    std::io::copy(&mut r, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

/// A source that yields `chunk` bytes every `pause`, forever.
pub struct Trickle {
    pub sleep: Pin<Box<tokio::time::Sleep>>,
    pub pause: Duration,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.sleep.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + self.pause;
        self.sleep.as_mut().reset(next);
        let n = buf.remaining().min(64 * 1024);
        buf.put_slice(&vec![b'z'; n]);
        Poll::Ready(Ok(()))
    }
}
