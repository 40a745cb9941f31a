//! A batch's control file on the partner (see [`crate::control`]): written once every file of
//! the batch is in place, never replacing another batch's. When it fails, its files are
//! remembered as awaiting it: their next attempt on this connector, finding them in place with the
//! right size, does not send them again ([`PublishOutcome::InPlace`]), and the next control file
//! lists them.

use std::time::SystemTime;

use russh_sftp::client::RawSftpSession;

use crate::control::ControlEntry;
use crate::error::Error;
use crate::session::{lock, Connector, Session};

use super::{Overwrite, Published};

impl Connector {
    /// Writes the partner's control file for a batch whose delivered files are `published`, its
    /// name rendered at `now`; `Ok(None)` when the partner has no `ControlFile` or nothing was
    /// delivered. Fails with [`Error::ControlFailed`] (transient when the name was taken).
    pub async fn write_control(
        &mut self,
        published: &[&Published],
        now: SystemTime,
    ) -> Result<Option<String>, Error> {
        let Some(control) = self.partner().control_file.clone() else {
            return Ok(None);
        };
        if published.is_empty() {
            return Ok(None);
        }
        let path = control.path_at(now)?;
        let entries: Vec<ControlEntry> = published
            .iter()
            .map(|p| ControlEntry {
                path: p.relative.clone(),
                size: p.size,
                sha256: p.sha256.clone(),
            })
            .collect();
        let written = async {
            let session = self.session().await?;
            let on = session.sftp.clone();
            session.create_dirs(&on, path.parent()).await?;
            let dir = session.join(path.parent());
            let content = control.content(&entries);
            session
                .write_small(
                    &on,
                    &dir,
                    path.file_name(),
                    content,
                    Overwrite::FailIfExists,
                )
                .await
        }
        .await;
        match written {
            Ok(written) => {
                let mut awaiting = lock(&self.awaiting);
                for k in published.iter().filter_map(|p| p.pending_key.as_ref()) {
                    awaiting.control.remove(k);
                }
                drop(awaiting);
                tracing::info!(
                    control_file = written,
                    files = entries.len(),
                    "control file written"
                );
                Ok(Some(written))
            }
            Err(e) => {
                self.await_control(published.iter().copied());
                self.discard_if_broken(&e);
                Err(Error::ControlFailed {
                    path: path.as_str().to_owned(),
                    files: entries.len(),
                    cause: Box::new(e),
                })
            }
        }
    }
}

impl Connector {
    /// Remembers `published` (files in place whose control file was not written: the deadline
    /// came first) as awaiting one, as a failed [`Connector::write_control`] does.
    pub fn await_control<'a>(&self, published: impl IntoIterator<Item = &'a Published>) {
        let mut awaiting = lock(&self.awaiting);
        awaiting
            .control
            .extend(published.into_iter().filter_map(|p| p.pending_key.clone()));
    }
}

impl Session {
    /// The size of `final_path` when these bytes (`key`) await their batch's control file and
    /// are there with the `expected` size; `None` (and no longer awaiting) otherwise.
    pub(super) async fn in_place_awaiting_control(
        &self,
        on: &RawSftpSession,
        expected: Option<u64>,
        final_path: &str,
        key: Option<&str>,
    ) -> Result<Option<u64>, Error> {
        let Some(key) = key.filter(|k| lock(&self.awaiting).control.contains(*k)) else {
            return Ok(None);
        };
        if expected.is_some() && self.size_of(on, final_path).await? == expected {
            return Ok(expected);
        }
        lock(&self.awaiting).control.remove(key);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::{Error, ErrorClass};

    #[test]
    fn a_taken_control_file_name_is_transient_other_causes_keep_their_class() {
        let failed = |cause| Error::ControlFailed {
            path: "b.ctl".into(),
            files: 2,
            cause: Box::new(cause),
        };
        let taken = failed(Error::AlreadyExists {
            path: "b.ctl".into(),
        });
        assert_eq!(taken.class(), ErrorClass::Transient, "{taken}");
        let refused = failed(Error::RenameRefused {
            temp: ".b.ctl.1.part".into(),
            path: "b.ctl".into(),
            why: "Permission denied".into(),
        });
        assert_eq!(refused.class(), ErrorClass::Permanent, "{refused}");
    }
}
