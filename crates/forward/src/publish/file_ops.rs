//! File operations on the partner around a publish: directories, the exclusive temporary
//! file and its removal, the rename into place, the writability probe, remote paths.

use std::time::Duration;

use rand::Rng;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use crate::error::Error;
use crate::session::{bounded, lock, Session};
use crate::upload::{join2, Upload};

use super::Overwrite;

/// A rename the server refused by permission (or does not support) as [`Error::RenameRefused`];
/// anything else as it is.
fn refused_rename(e: Error, temp_path: &str) -> Error {
    match e {
        Error::Sftp {
            op: "rename" | "posix-rename",
            path,
            cause: SftpError::Status(s),
        } if matches!(
            s.status_code,
            StatusCode::PermissionDenied | StatusCode::OpUnsupported
        ) =>
        {
            Error::RenameRefused {
                temp: temp_path.to_owned(),
                path,
                why: crate::error::reason(&SftpError::Status(s)),
            }
        }
        e => e,
    }
}

impl Session {
    pub(super) async fn rename_into_place(
        &self,
        on: &RawSftpSession,
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
            let renamed = match on.extended("posix-rename@openssh.com", data).await {
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
            return renamed.map_err(|e| refused_rename(e, temp_path));
        }
        // Plain SFTP rename never replaces an existing file (OpenSSH links, then unlinks).
        match on.rename(temp_path, final_path).await {
            Ok(_) => Ok(()),
            // Refused as such (not "the target exists"): removing the partner's file first would
            // only lose it when the second rename is refused too.
            Err(SftpError::Status(s))
                if matches!(
                    s.status_code,
                    StatusCode::PermissionDenied | StatusCode::OpUnsupported
                ) =>
            {
                Err(refused_rename(
                    Error::sftp("rename", final_path, SftpError::Status(s)),
                    temp_path,
                ))
            }
            Err(e) => {
                let exists = self.size_of(on, final_path).await?.is_some();
                match (exists, replace) {
                    (true, false) => Err(Error::AlreadyExists {
                        path: final_path.to_owned(),
                    }),
                    (true, true) => {
                        // No atomic replace on this server: remove, then rename. The final
                        // name is briefly absent, but never holds a partial file.
                        on.remove(final_path)
                            .await
                            .map_err(|e| Error::sftp("remove", final_path, e))?;
                        on.rename(temp_path, final_path)
                            .await
                            .map(|_| ())
                            .map_err(|e| {
                                refused_rename(Error::sftp("rename", final_path, e), temp_path)
                            })
                    }
                    (false, _) => Err(refused_rename(
                        Error::sftp("rename", final_path, e),
                        temp_path,
                    )),
                }
            }
        }
    }

    /// Whether the login may create files in `RemoteDirectory`: creates an empty hidden probe
    /// file there (exclusively, so nothing is overwritten), then removes it. `Ok` means writable;
    /// the error says why not (a missing directory or a permission refusal is permanent).
    pub async fn check_writable(&mut self) -> Result<(), Error> {
        let probe = Upload::HiddenTemp
            .temp_path(&self.remote_directory, "sftp-forward-probe", &random_tag())
            .expect("a hidden-temp name");
        let handle = self.open_exclusive(&self.sftp, &probe).await?;
        let closed = self.sftp.close(handle).await;
        self.sftp
            .remove(&probe)
            .await
            .map_err(|e| Error::sftp("remove", &probe, e))?;
        closed.map_err(|e| Error::sftp("close", &probe, e))?;
        self.touch();
        Ok(())
    }

    pub(super) async fn open_exclusive(
        &self,
        on: &RawSftpSession,
        temp_path: &str,
    ) -> Result<String, Error> {
        self.open_temp(on, temp_path, Opening::Exclusive).await
    }

    /// Opens `temp_path` for writing, created if missing, as `how` says.
    pub(super) async fn open_temp(
        &self,
        on: &RawSftpSession,
        temp_path: &str,
        how: Opening,
    ) -> Result<String, Error> {
        let flags = OpenFlags::WRITE
            | OpenFlags::CREATE
            | match how {
                Opening::Exclusive => OpenFlags::EXCLUDE,
                Opening::Keep => OpenFlags::empty(),
                Opening::Truncate => OpenFlags::TRUNCATE,
            };
        on.open(temp_path, flags, FileAttributes::empty())
            .await
            .map(|h| h.handle)
            .map_err(|e| Error::sftp("open", temp_path, e))
    }

    /// Size of `path` if it exists, `None` if it does not.
    pub(super) async fn size_of(
        &self,
        on: &RawSftpSession,
        path: &str,
    ) -> Result<Option<u64>, Error> {
        match on.stat(path).await {
            Ok(attrs) => Ok(Some(attrs.attrs.size.unwrap_or(0))),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(Error::sftp("stat", path, e)),
        }
    }

    /// `mkdir -p` for the parent segments under `RemoteDirectory` (which must exist).
    pub(super) async fn create_dirs(
        &self,
        on: &RawSftpSession,
        parent: &[String],
    ) -> Result<(), Error> {
        for depth in 1..=parent.len() {
            let dir = self.join(&parent[..depth]);
            if lock(&self.known_dirs).contains(&dir) {
                continue;
            }
            match on.stat(&dir).await {
                Ok(a) if a.attrs.is_dir() => {}
                Ok(_) => {
                    return Err(Error::sftp(
                        "mkdir",
                        &dir,
                        SftpError::UnexpectedBehavior("a file with this name is in the way".into()),
                    ))
                }
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                    if let Err(e) = on.mkdir(&dir, FileAttributes::empty()).await {
                        // Another publisher may have created it meanwhile.
                        if !on.stat(&dir).await.is_ok_and(|a| a.attrs.is_dir()) {
                            return Err(Error::sftp("mkdir", &dir, e));
                        }
                    }
                }
                Err(e) => return Err(Error::sftp("stat", &dir, e)),
            }
            lock(&self.known_dirs).insert(dir);
        }
        Ok(())
    }

    /// Best effort, bounded in time: close the handle of a temporary file that stays.
    pub(super) async fn close_kept(&self, on: &RawSftpSession, handle: &str, temp_path: &str) {
        let closing = async {
            on.close(handle)
                .await
                .map(drop)
                .map_err(|e| Error::sftp("close", temp_path, e))
        };
        match bounded(Duration::from_secs(5), "closing", &self.addr, closing).await {
            Ok(()) => tracing::info!(temp_path, "kept the temporary file for the retry"),
            Err(e) => {
                tracing::warn!(temp_path, error = %e, "could not close the kept temporary file")
            }
        }
    }

    /// Best effort: close the handle (unless its CLOSE was sent already) and delete the
    /// temporary file, bounded in time.
    pub(super) async fn remove_temp(
        &self,
        on: &RawSftpSession,
        handle: Option<&str>,
        temp_path: &str,
        cause: &Error,
    ) {
        if cause.connection_lost() && self.upload == Upload::Direct {
            // The final name itself: a later connection must not remove it blindly (another
            // delivery may have written it whole meanwhile). The retry rewrites it.
            tracing::warn!(
                path = temp_path,
                "connection lost; the partial file stays under its final name until the retry \
                 rewrites it (the direct upload convention)"
            );
            return;
        }
        if cause.connection_lost() {
            tracing::warn!(
                temp_path,
                "connection lost; the temporary file stays until the next connection removes it \
                 (never under the final name)"
            );
            lock(&self.orphans).push(temp_path.to_owned());
            return;
        }
        let cleanup = async {
            if let Some(handle) = handle {
                let _ = on.close(handle).await;
            }
            on.remove(temp_path)
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
    pub(super) fn join(&self, segments: &[String]) -> String {
        segments
            .iter()
            .fold(self.remote_directory.clone(), |acc, seg| join2(&acc, seg))
    }
}

/// How a file is opened for writing (always created if missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Opening {
    /// Fails if it exists: a fresh temporary name, or `direct` under `fail-if-exists`.
    Exclusive,
    /// An existing file is kept as it is (never truncated: a resumed file).
    Keep,
    /// An existing file is emptied: `direct` under the other policies.
    Truncate,
}

/// 8 random hex digits: what makes a plain (not resumable) temporary name unique.
pub(super) fn random_tag() -> String {
    let tag: u32 = rand::rng().random();
    format!("{tag:08x}")
}
