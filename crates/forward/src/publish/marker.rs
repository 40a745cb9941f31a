//! Done markers on the partner (see [`crate::marker`]): written after the file's rename, in the
//! partner's upload convention; a file already in place with the right size but without its
//! marker (an earlier attempt whose marker failed) gets the marker only, never sent again.

use std::pin::Pin;
use std::task::{Context, Poll};

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::Error;
use crate::marker::DoneMarker;
use crate::session::Session;
use crate::upload::{join2, Upload};

use super::file_ops::{random_tag, Opening};
use super::source::{Payload, RangeSource};
use super::Overwrite;

/// A reader that hashes what passes through it (when given a hasher).
pub(super) struct Hashing<'h, R> {
    pub inner: R,
    pub hasher: Option<&'h mut Sha256>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

/// Lowercase hex of a finished hash.
pub(super) fn hex(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Session {
    /// Writes the marker of `file_name` (in `dir`), `size` bytes with SHA-256 `digest`, replacing
    /// an older one: through a temporary name and a rename, or straight under `direct`.
    pub(super) async fn write_marker(
        &self,
        on: &RawSftpSession,
        marker: &DoneMarker,
        dir: &str,
        file_name: &str,
        size: u64,
        digest: Option<&str>,
    ) -> Result<String, Error> {
        let name = marker.name_for(file_name);
        let content = marker.content(file_name, size, digest);
        self.write_small(on, dir, &name, content, Overwrite::Overwrite)
            .await
    }

    /// Writes a small file `name` in `dir` holding `content`: through a temporary name and a
    /// rename under `policy`, or straight under `direct`. Under `fail-if-exists` a file already
    /// there is [`Error::AlreadyExists`] before anything is written (and the open under `direct` is
    /// exclusive, so that it never replaces one that appears meanwhile).
    pub(super) async fn write_small(
        &self,
        on: &RawSftpSession,
        dir: &str,
        name: &str,
        content: Vec<u8>,
        policy: Overwrite,
    ) -> Result<String, Error> {
        let final_path = join2(dir, name);
        if policy == Overwrite::FailIfExists && self.size_of(on, &final_path).await?.is_some() {
            return Err(Error::AlreadyExists { path: final_path });
        }
        let temp_path = self
            .upload
            .temp_path(dir, name, &random_tag())
            .unwrap_or_else(|| final_path.clone());
        let how = match self.upload {
            Upload::Direct if policy != Overwrite::FailIfExists => Opening::Truncate,
            _ => Opening::Exclusive,
        };
        let handle = self.open_temp(on, &temp_path, how).await?;
        // In WRITEs the server takes (a control file listing thousands of files is larger than
        // one), one after another: small files, no pipelining needed.
        let mut written = Ok(());
        for (n, piece) in content.chunks(self.chunk_size.max(1)).enumerate() {
            let offset = (n * self.chunk_size.max(1)) as u64;
            written = on
                .write(handle.as_str(), offset, piece.to_vec())
                .await
                .map(drop)
                .map_err(|e| Error::sftp("write", &temp_path, e));
            if written.is_err() {
                break;
            }
        }
        let closed = on
            .close(handle)
            .await
            .map(drop)
            .map_err(|e| Error::sftp("close", &temp_path, e));
        let placed = match written.and(closed) {
            Ok(()) if temp_path != final_path => {
                self.rename_into_place(on, &temp_path, &final_path, policy)
                    .await
            }
            other => other,
        };
        if let Err(e) = placed {
            let _ = on.remove(&temp_path).await;
            return Err(e);
        }
        Ok(final_path)
    }

    /// Removes the marker of `file_name` in `dir` if there is one.
    pub(super) async fn remove_marker(
        &self,
        on: &RawSftpSession,
        marker: &DoneMarker,
        dir: &str,
        file_name: &str,
    ) -> Result<(), Error> {
        let path = join2(dir, &marker.name_for(file_name));
        match on.remove(&path).await {
            Ok(_) => Ok(()),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(()),
            Err(e) => Err(Error::sftp("remove", &path, e)),
        }
    }

    /// Whether `final_path` is already there with `expected` bytes but its marker is not: the
    /// earlier attempt's file is in place and only its marker failed.
    pub(super) async fn needs_marker_only(
        &self,
        on: &RawSftpSession,
        marker: &DoneMarker,
        dir: &str,
        file_name: &str,
        final_path: &str,
        expected: Option<u64>,
    ) -> Result<bool, Error> {
        let Some(expected) = expected else {
            return Ok(false);
        };
        if self.size_of(on, final_path).await? != Some(expected) {
            return Ok(false);
        }
        let marker_path = join2(dir, &marker.name_for(file_name));
        Ok(self.size_of(on, &marker_path).await?.is_none())
    }
}

/// The SHA-256 of a payload, read again from the source (not sent): for the marker of a file
/// that is already in place.
pub(super) async fn digest_of<R: AsyncRead + Unpin, S: RangeSource>(
    payload: Payload<'_, R, S>,
) -> Result<String, Error> {
    let read = |e| Error::Source { sent: 0, source: e };
    match payload {
        Payload::Stream { source, .. } => hash_all(source).await.map_err(read),
        Payload::Ranges(source) => {
            let reader = source.open(0..source.len()).await.map_err(read)?;
            hash_all(reader).await.map_err(read)
        }
    }
}

async fn hash_all<R: AsyncRead + Unpin>(reader: R) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut hashing = Hashing {
        inner: reader,
        hasher: Some(&mut hasher),
    };
    tokio::io::copy(&mut hashing, &mut tokio::io::sink()).await?;
    Ok(hex(hasher))
}
