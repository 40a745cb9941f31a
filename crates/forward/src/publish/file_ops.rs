//! File operations on the partner around a publish: directories, the exclusive temporary
//! file and its removal, the rename into place, the writability probe, remote paths.

use std::time::Duration;

use rand::Rng;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use crate::error::Error;
use crate::session::{bounded, lock, Session};

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
        let probe = join2(&self.remote_directory, &temp_name("sftp-forward-probe"));
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
        self.open_temp(on, temp_path, true).await
    }

    /// Opens `temp_path` for writing, created if missing: `exclusive` fails if it exists;
    /// otherwise an existing file is kept as it is (never truncated: a resumed file).
    pub(super) async fn open_temp(
        &self,
        on: &RawSftpSession,
        temp_path: &str,
        exclusive: bool,
    ) -> Result<String, Error> {
        let mut flags = OpenFlags::WRITE | OpenFlags::CREATE;
        if exclusive {
            flags |= OpenFlags::EXCLUDE;
        }
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

    /// Best effort: close the handle (unless its CLOSE was sent already) and delete the
    /// temporary file, bounded in time.
    pub(super) async fn remove_temp(
        &self,
        on: &RawSftpSession,
        handle: Option<&str>,
        temp_path: &str,
        cause: &Error,
    ) {
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

/// `name` under `dir`. In the login directory (`.`) a name that a server could read as something
/// else — `~user` (a home directory) or `C:` (a drive) — is sent as `./name`: always a name in the
/// login directory.
pub(super) fn join2(dir: &str, name: &str) -> String {
    match dir {
        "." | "" if name.starts_with('~') || name.contains(':') => format!("./{name}"),
        "." | "" => name.to_owned(),
        "/" => format!("/{name}"),
        _ => format!("{dir}/{name}"),
    }
}

/// `.name.<8 hex>.part`, shortened so it stays within 255 bytes.
pub(super) fn temp_name(file_name: &str) -> String {
    let tag: u32 = rand::rng().random();
    format!(".{}.{tag:08x}.part", name_stem(file_name))
}

/// The part of `file_name` a temporary name starts with: at most 200 bytes.
pub(super) fn name_stem(file_name: &str) -> &str {
    let mut end = file_name.len().min(200);
    while !file_name.is_char_boundary(end) {
        end -= 1;
    }
    &file_name[..end]
}

/// Whether `name` is one of our temporary names: `.name.<8 hex>.part` (a plain publish, the
/// writability probe) or `.name.sfr-<16 hex>.part` (a resumable one).
pub(super) fn is_temp_name(name: &str) -> bool {
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".part")) else {
        return false;
    };
    let Some((stem, tag)) = inner.rsplit_once('.') else {
        return false;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    !stem.is_empty() && (hex(tag, 8) || tag.strip_prefix("sfr-").is_some_and(|t| hex(t, 16)))
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
    fn only_our_temporary_names_are_recognised() {
        assert!(is_temp_name(&temp_name("report.csv")));
        assert!(is_temp_name(".a.b.sfr-0123456789abcdef.part"));
        assert!(is_temp_name(".sftp-forward-probe.deadbeef.part"));
        for foreign in [
            ".report.csv.part",
            ".report.csv.1234.part",
            "report.csv.deadbeef.part",
            "..deadbeef.part",
            ".a.sfr-0123.part",
            ".a.deadbeef.partial",
            ".bashrc",
        ] {
            assert!(!is_temp_name(foreign), "{foreign}");
        }
    }

    #[test]
    fn joins_under_the_remote_directory() {
        assert_eq!(join2(".", "a"), "a");
        assert_eq!(join2("/", "a"), "/a");
        assert_eq!(join2("upload/in", "a"), "upload/in/a");
        assert_eq!(join2(".", "~acme"), "./~acme");
        assert_eq!(join2(".", "C:"), "./C:");
        assert_eq!(join2(".", "report:v2.csv"), "./report:v2.csv");
        assert_eq!(join2("in", "~acme"), "in/~acme");
    }
}
