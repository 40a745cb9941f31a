//! Stopping a publish from outside. A caller with a deadline (the Lambda, at its invocation's
//! deadline minus a margin) drops a publish's future mid-transfer: no more writes go out, but
//! what the publish had opened on the partner is still there. Every session keeps that in
//! [`Unsettled`] (each temporary file, registered before its OPEN is sent, and the handles opened
//! on it), so [`Connector::abandon`] can close those handles and remove the temporary file on a
//! fresh, bounded budget.
//!
//! There is no resume yet: an interrupted file is removed, and the next delivery starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::StatusCode;

use crate::session::{lock, Connector};

/// One channel's handle on a temporary file.
type Handle = (Arc<RawSftpSession>, String);

/// Temporary files a session's publishes have started and not settled yet (renamed into place,
/// or removed after an error), each with the handles opened on it.
#[derive(Default)]
pub(crate) struct Unsettled(Mutex<HashMap<String, Vec<Handle>>>);

impl Unsettled {
    /// A publish is about to create `temp_path`. Registered before the OPEN goes out, so a file
    /// whose OPEN was sent but not answered is still known.
    pub(crate) fn begin(&self, temp_path: &str) {
        lock(&self.0).insert(temp_path.to_owned(), Vec::new());
    }

    /// `channel` holds `handle` on `temp_path`.
    pub(crate) fn opened(&self, temp_path: &str, channel: &Arc<RawSftpSession>, handle: &str) {
        if let Some(handles) = lock(&self.0).get_mut(temp_path) {
            handles.push((channel.clone(), handle.to_owned()));
        }
    }

    /// The publish of `temp_path` ended by itself (whatever the result): nothing to clean up here.
    pub(crate) fn settled(&self, temp_path: &str) {
        lock(&self.0).remove(temp_path);
    }

    fn take(&self) -> Vec<(String, Vec<Handle>)> {
        lock(&self.0).drain().collect()
    }
}

/// What [`Connector::abandon`] did with the temporary files of the interrupted publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// Removed from the partner (or never created).
    pub removed: Vec<String>,
    /// Still there: the partner did not answer within the budget. The next connection removes
    /// them before its first publish.
    pub left: Vec<String>,
}

impl Connector {
    /// After a publish was stopped from outside (its future dropped, see the module doc): close
    /// the handles it had open and remove its temporary files, all requests sent at once and
    /// bounded by `limit`. The connection is not kept either way: its channels may still carry
    /// the abandoned writes, and a stalled partner would stall the next file too.
    pub async fn abandon(&mut self, limit: Duration) -> Abandoned {
        let mut done = Abandoned::default();
        let Some(session) = self.live.as_ref() else {
            return done;
        };
        let files = session.unsettled.take();
        let main = session.sftp.clone();
        let cleanup = futures_util::future::join_all(files.iter().map(|(path, handles)| {
            let main = &main;
            async move {
                // Requests on one channel are processed in order: the REMOVE follows its CLOSE.
                let closes = futures_util::future::join_all(
                    handles.iter().map(|(channel, h)| channel.close(h.as_str())),
                );
                let (_, removed) = futures_util::join!(closes, main.remove(path.as_str()));
                match removed {
                    Ok(_) => true,
                    // Its OPEN never reached the server.
                    Err(SftpError::Status(s)) => s.status_code == StatusCode::NoSuchFile,
                    Err(_) => false,
                }
            }
        }));
        let removed = tokio::time::timeout(limit, cleanup).await.ok();
        for (i, (path, _)) in files.into_iter().enumerate() {
            if removed.as_ref().is_some_and(|r| r[i]) {
                done.removed.push(path);
            } else {
                done.left.push(path);
            }
        }
        self.drop_live();
        self.orphans.extend(done.left.iter().cloned());
        done
    }
}
