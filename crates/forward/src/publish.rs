//! Publishing one file: stream the source into a temporary name beside the
//! target, check the size, then rename onto the final name. Nothing ever
//! appears under the final name unless it is complete.
//!
//! ```text
//! stat final (policy) → mkdir -p parent → open .name.<rand>.part (exclusive)
//!   → WRITEs, several in flight → fstat == bytes sent == expected → close
//!   → posix-rename (atomic replace) | rename → done
//! on any error: close + remove the temporary file (best effort)
//! ```

use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::Rng;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::error::Error;
use crate::route::RemotePath;
use crate::session::{bounded, Connector, Session};

/// What to do when the final name already exists on the partner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it (atomically where the server offers `posix-rename@openssh.com`).
    #[default]
    Overwrite,
    /// Fail with a permanent error; never replace.
    FailIfExists,
    /// Skip the upload when a file of the expected size is already there; otherwise replace.
    SkipIfSameSize,
}

impl FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overwrite" => Ok(Overwrite::Overwrite),
            "fail-if-exists" => Ok(Overwrite::FailIfExists),
            "skip-if-same-size" => Ok(Overwrite::SkipIfSameSize),
            other => Err(format!(
                "unknown overwrite policy {other:?}: use overwrite, fail-if-exists or skip-if-same-size"
            )),
        }
    }
}

/// How a publish ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The file was written and renamed onto its final name.
    Written,
    /// A file of the same size was already there (`skip-if-same-size`).
    SkippedSameSize,
}

/// A successful publish.
#[derive(Clone, Debug)]
pub struct Published {
    /// The final path on the server, as given to SFTP (under `RemoteDirectory`).
    pub remote_path: String,
    /// Bytes written (0 when skipped).
    pub bytes: u64,
    /// Written or skipped.
    pub outcome: PublishOutcome,
    /// Wall time of the whole publish.
    pub elapsed: Duration,
}

impl Connector {
    /// Publish `source` as `path` under the partner's `RemoteDirectory`, over the kept
    /// connection (opened or re-opened as needed). A connection broken by the attempt is
    /// dropped so the next call starts afresh.
    pub async fn publish<R: AsyncRead + Unpin>(
        &mut self,
        source: R,
        expected_len: Option<u64>,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let result = match self.session().await {
            Ok(session) => session.publish(source, expected_len, path, policy).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.discard_if_broken(e);
        }
        result
    }
}

impl Session {
    /// Publish `source` as `path` under `RemoteDirectory`; see the module doc for the steps.
    pub async fn publish<R: AsyncRead + Unpin>(
        &mut self,
        source: R,
        expected_len: Option<u64>,
        path: &RemotePath,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let dir = self.join(path.parent());
        let final_path = join2(&dir, path.file_name());
        let span = tracing::info_span!("publish", remote_path = %final_path, expected_len);
        self.publish_at(source, expected_len, path, &dir, final_path, policy)
            .instrument(span)
            .await
    }

    async fn publish_at<R: AsyncRead + Unpin>(
        &mut self,
        source: R,
        expected_len: Option<u64>,
        path: &RemotePath,
        dir: &str,
        final_path: String,
        policy: Overwrite,
    ) -> Result<Published, Error> {
        let started = Instant::now();
        if policy != Overwrite::Overwrite {
            if let Some(existing) = self.size_of(&final_path).await? {
                match policy {
                    Overwrite::FailIfExists => {
                        return Err(Error::AlreadyExists { path: final_path })
                    }
                    Overwrite::SkipIfSameSize if Some(existing) == expected_len => {
                        tracing::info!(
                            size = existing,
                            "same size already on the partner; skipped"
                        );
                        self.touch();
                        return Ok(Published {
                            remote_path: final_path,
                            bytes: 0,
                            outcome: PublishOutcome::SkippedSameSize,
                            elapsed: started.elapsed(),
                        });
                    }
                    _ => {}
                }
            }
        }

        self.create_dirs(path.parent()).await?;
        let temp_path = join2(dir, &temp_name(path.file_name()));
        let handle = match self.open_exclusive(&temp_path).await {
            // The directory may have been removed since we cached it: check once more.
            Err(Error::Sftp {
                source: SftpError::Status(s),
                ..
            }) if s.status_code == StatusCode::NoSuchFile => {
                self.known_dirs.clear();
                self.create_dirs(path.parent()).await?;
                self.open_exclusive(&temp_path).await?
            }
            other => other?,
        };

        let written = self
            .upload_and_rename(
                source,
                expected_len,
                &handle,
                &temp_path,
                &final_path,
                policy,
            )
            .await;
        match written {
            Ok(bytes) => {
                self.touch();
                tracing::info!(
                    bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "published"
                );
                Ok(Published {
                    remote_path: final_path,
                    bytes,
                    outcome: PublishOutcome::Written,
                    elapsed: started.elapsed(),
                })
            }
            Err(e) => {
                self.remove_temp(&handle, &temp_path, &e).await;
                Err(e)
            }
        }
    }

    async fn upload_and_rename<R: AsyncRead + Unpin>(
        &self,
        source: R,
        expected_len: Option<u64>,
        handle: &str,
        temp_path: &str,
        final_path: &str,
        policy: Overwrite,
    ) -> Result<u64, Error> {
        let sent = self
            .stream_writes(source, expected_len, handle, temp_path)
            .await?;
        let remote = self
            .sftp
            .fstat(handle)
            .await
            .map_err(|e| Error::sftp("fstat", temp_path, e))?
            .attrs
            .size;
        if remote != Some(sent) {
            return Err(Error::SizeMismatch {
                path: temp_path.to_owned(),
                remote: remote.unwrap_or(0),
                sent,
            });
        }
        self.sftp
            .close(handle)
            .await
            .map_err(|e| Error::sftp("close", temp_path, e))?;
        self.rename_into_place(temp_path, final_path, policy)
            .await?;
        Ok(sent)
    }

    /// Read the source in `chunk_size` pieces and keep up to `writes_in_flight` WRITEs
    /// outstanding, each at its own offset. Memory: at most (in flight + 1) chunks.
    async fn stream_writes<R: AsyncRead + Unpin>(
        &self,
        mut source: R,
        expected_len: Option<u64>,
        handle: &str,
        temp_path: &str,
    ) -> Result<u64, Error> {
        let mut in_flight: JoinSet<Result<(), SftpError>> = JoinSet::new();
        let mut offset = 0u64;
        loop {
            let mut chunk = vec![0u8; self.chunk_size];
            let n = read_full(&mut source, &mut chunk)
                .await
                .map_err(|source| Error::Source {
                    sent: offset,
                    source,
                })?;
            if n == 0 {
                break;
            }
            chunk.truncate(n);
            if let Some(expected) = expected_len {
                if offset + n as u64 > expected {
                    return Err(Error::LengthMismatch {
                        expected,
                        got: offset + n as u64,
                    });
                }
            }
            while in_flight.len() >= self.writes_in_flight {
                settle(in_flight.join_next().await, temp_path)?;
            }
            let sftp = self.sftp.clone();
            let handle = handle.to_owned();
            let at = offset;
            in_flight.spawn(async move { sftp.write(handle, at, chunk).await.map(|_| ()) });
            offset += n as u64;
        }
        while let Some(done) = in_flight.join_next().await {
            settle(Some(done), temp_path)?;
        }
        match expected_len {
            Some(expected) if expected != offset => Err(Error::LengthMismatch {
                expected,
                got: offset,
            }),
            _ => Ok(offset),
        }
    }

    async fn rename_into_place(
        &self,
        temp_path: &str,
        final_path: &str,
        policy: Overwrite,
    ) -> Result<(), Error> {
        let replace = policy != Overwrite::FailIfExists;
        if replace && self.posix_rename {
            // Atomic replace: readers see the old file or the new one, never a gap.
            let mut data = Vec::with_capacity(8 + temp_path.len() + final_path.len());
            for s in [temp_path, final_path] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match self.sftp.extended("posix-rename@openssh.com", data).await {
                Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(s)) => Err(Error::sftp(
                    "posix-rename",
                    final_path,
                    SftpError::Status(s),
                )),
                Ok(_) => Err(Error::sftp(
                    "posix-rename",
                    final_path,
                    SftpError::UnexpectedPacket,
                )),
                Err(e) => Err(Error::sftp("posix-rename", final_path, e)),
            };
        }
        // Plain SFTP rename never replaces an existing file (OpenSSH links, then unlinks).
        match self.sftp.rename(temp_path, final_path).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let exists = self.size_of(final_path).await?.is_some();
                match (exists, replace) {
                    (true, false) => Err(Error::AlreadyExists {
                        path: final_path.to_owned(),
                    }),
                    (true, true) => {
                        // No atomic replace on this server: remove, then rename. The final
                        // name is briefly absent, but never holds a partial file.
                        self.sftp
                            .remove(final_path)
                            .await
                            .map_err(|e| Error::sftp("remove", final_path, e))?;
                        self.sftp
                            .rename(temp_path, final_path)
                            .await
                            .map(|_| ())
                            .map_err(|e| Error::sftp("rename", final_path, e))
                    }
                    (false, _) => Err(Error::sftp("rename", final_path, e)),
                }
            }
        }
    }

    /// Whether the login may create files in `RemoteDirectory`: creates an empty hidden probe
    /// file there (exclusively, so nothing is overwritten), then removes it. `Ok` means writable;
    /// the error says why not (a missing directory or a permission refusal is permanent).
    pub async fn check_writable(&mut self) -> Result<(), Error> {
        let probe = join2(&self.remote_directory, &temp_name("sftp-forward-probe"));
        let handle = self.open_exclusive(&probe).await?;
        let closed = self.sftp.close(handle).await;
        self.sftp
            .remove(&probe)
            .await
            .map_err(|e| Error::sftp("remove", &probe, e))?;
        closed.map_err(|e| Error::sftp("close", &probe, e))?;
        self.touch();
        Ok(())
    }

    async fn open_exclusive(&self, temp_path: &str) -> Result<String, Error> {
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE;
        self.sftp
            .open(temp_path, flags, FileAttributes::empty())
            .await
            .map(|h| h.handle)
            .map_err(|e| Error::sftp("open", temp_path, e))
    }

    /// Size of `path` if it exists, `None` if it does not.
    async fn size_of(&self, path: &str) -> Result<Option<u64>, Error> {
        match self.sftp.stat(path).await {
            Ok(attrs) => Ok(Some(attrs.attrs.size.unwrap_or(0))),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(Error::sftp("stat", path, e)),
        }
    }

    /// `mkdir -p` for the parent segments under `RemoteDirectory` (which must exist).
    async fn create_dirs(&mut self, parent: &[String]) -> Result<(), Error> {
        for depth in 1..=parent.len() {
            let dir = self.join(&parent[..depth]);
            if self.known_dirs.contains(&dir) {
                continue;
            }
            match self.sftp.stat(&dir).await {
                Ok(a) if a.attrs.is_dir() => {}
                Ok(_) => {
                    return Err(Error::sftp(
                        "mkdir",
                        &dir,
                        SftpError::UnexpectedBehavior("a file with this name is in the way".into()),
                    ))
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                    if let Err(e) = self.sftp.mkdir(&dir, FileAttributes::empty()).await {
                        // Another publisher may have created it meanwhile.
                        if !self.sftp.stat(&dir).await.is_ok_and(|a| a.attrs.is_dir()) {
                            return Err(Error::sftp("mkdir", &dir, e));
                        }
                    }
                }
                Err(e) => return Err(Error::sftp("stat", &dir, e)),
            }
            self.known_dirs.insert(dir);
        }
        Ok(())
    }

    /// Best effort: close the handle and delete the temporary file, bounded in time.
    async fn remove_temp(&self, handle: &str, temp_path: &str, cause: &Error) {
        if cause.connection_lost() {
            tracing::warn!(
                temp_path,
                "connection lost; the temporary file stays (never under the final name)"
            );
            return;
        }
        let cleanup = async {
            let _ = self.sftp.close(handle).await;
            self.sftp
                .remove(temp_path)
                .await
                .map(|_| ())
                .map_err(|e| Error::sftp("remove", temp_path, e))
        };
        if let Err(e) = bounded(
            Duration::from_secs(5),
            "removing the temporary file",
            &self.addr,
            cleanup,
        )
        .await
        {
            tracing::warn!(temp_path, error = %e, "could not remove the temporary file");
        }
    }

    /// `RemoteDirectory` joined with `segments`.
    fn join(&self, segments: &[String]) -> String {
        segments
            .iter()
            .fold(self.remote_directory.clone(), |acc, seg| join2(&acc, seg))
    }
}

fn join2(dir: &str, name: &str) -> String {
    match dir {
        "." | "" => name.to_owned(),
        "/" => format!("/{name}"),
        _ => format!("{dir}/{name}"),
    }
}

/// `.name.<8 hex>.part`, shortened so it stays within 255 bytes.
fn temp_name(file_name: &str) -> String {
    let mut end = file_name.len().min(200);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    let tag: u32 = rand::rng().random();
    format!(".{}.{tag:08x}.part", &file_name[..end])
}

fn settle(
    joined: Option<Result<Result<(), SftpError>, tokio::task::JoinError>>,
    temp_path: &str,
) -> Result<(), Error> {
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(e))) => Err(Error::sftp("write", temp_path, e)),
        Some(Err(join)) => Err(Error::sftp(
            "write",
            temp_path,
            SftpError::UnexpectedBehavior(format!("write task failed: {join}")),
        )),
    }
}

/// Fill `buf` from `source`; fewer bytes only at end of input.
async fn read_full<R: AsyncRead + Unpin>(source: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_unique_and_short() {
        let a = temp_name("report.csv");
        assert!(a.starts_with(".report.csv.") && a.ends_with(".part"), "{a}");
        assert_ne!(a, temp_name("report.csv"));
        let long = "é".repeat(127); // 254 bytes
        assert!(temp_name(&long).len() <= 255);
    }

    #[test]
    fn policies_parse_from_their_names() {
        assert_eq!(
            "fail-if-exists".parse::<Overwrite>(),
            Ok(Overwrite::FailIfExists)
        );
        assert!("clobber"
            .parse::<Overwrite>()
            .unwrap_err()
            .contains("overwrite, fail-if-exists"));
    }

    #[test]
    fn joins_under_the_remote_directory() {
        assert_eq!(join2(".", "a"), "a");
        assert_eq!(join2("/", "a"), "/a");
        assert_eq!(join2("upload/in", "a"), "upload/in/a");
    }
}
