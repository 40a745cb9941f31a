//! One authenticated SSH connection with an SFTP channel, and a [`Connector`]
//! that keeps it across many files and re-opens it when it has died.
//!
//! Every network step is bounded: TCP connect plus SSH handshake by
//! `connect_timeout`, login by `auth_timeout`, each SFTP request by
//! `request_timeout`; SSH keepalives notice a dead peer between files.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::{client, ChannelMsg};
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;

use crate::config::Partner;
use crate::error::Error;
use crate::handshake::{handshake, Negotiated, Pinned};
use crate::hostkey::Fingerprint;
use crate::interrupt::Unsettled;

/// Time bounds and transfer sizes. The defaults suit a WAN partner and Lambda.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// TCP connect plus SSH handshake (key exchange, host key check).
    pub connect_timeout: Duration,
    /// Login (all methods together).
    pub auth_timeout: Duration,
    /// Each SFTP request, including each WRITE's reply. Whole seconds.
    pub request_timeout: Duration,
    /// SSH keepalive interval; three unanswered keepalives close the connection.
    pub keepalive_interval: Duration,
    /// A reused connection idle for longer than this is probed before use.
    pub probe_idle_after: Duration,
    /// Bytes per SFTP WRITE (capped by the server's `limits@openssh.com`, else 32 KiB).
    pub chunk_size: usize,
    /// WRITE requests in flight per channel. `chunk_size × writes_in_flight` ≈ the
    /// server's channel window (2 MiB for OpenSSH) is enough; more only queues in memory.
    pub writes_in_flight: usize,
    /// Most SFTP channels (on the one SSH connection) that write one file at once, each its
    /// own byte range: over a WAN one channel is capped at the server's window / RTT. The
    /// partner JSON's `Parallelism` overrides it; fewer are used when the server refuses more.
    pub stripes: usize,
    /// A file gets one stripe per this many bytes (up to `stripes`): small files use one channel.
    pub stripe_min_bytes: u64,
    /// Our temporary files older than this are removed from a directory the first time a
    /// connection publishes into it (see `publish::sweep`); zero never sweeps.
    pub stale_temp_after: Duration,
}

impl Tuning {
    /// `stripe_min_bytes`, at least 1.
    pub(crate) fn stripe_min(&self) -> u64 {
        self.stripe_min_bytes.max(1)
    }
}

/// The most SFTP channels one file or batch is spread over: the partner's `Parallelism`, else
/// the tuning's `stripes`; at least 1.
pub(crate) fn parallelism(partner: &Partner, tuning: &Tuning) -> usize {
    partner.parallelism.unwrap_or(tuning.stripes).max(1)
}

/// Files in place (by resume key: final path and the bytes' identity) whose signal to the
/// partner failed: the next attempt for the same bytes, finding them there with the right size,
/// writes only what is missing instead of sending the file again.
#[derive(Debug, Default)]
pub(crate) struct Awaiting {
    /// Their done marker.
    pub marker: std::collections::HashSet<String>,
    /// Their batch's control file.
    pub control: std::collections::HashSet<String>,
}

/// Whether the partner's done marker or control file lists each file's SHA-256.
pub(crate) fn digest_wanted(partner: &Partner) -> bool {
    partner
        .done_marker
        .as_ref()
        .is_some_and(|m| m.needs_digest())
        || partner
            .control_file
            .as_ref()
            .is_some_and(|c| c.needs_digest())
}

/// `Tuning::stripe_min_bytes`, or never striped: when the partner's done marker or control file
/// needs the file's SHA-256 (taken as one stream from byte 0), and under the `direct` convention
/// (the partner watches the file grow from its start: stripes would show it full-size with holes).
pub(crate) fn stripe_min(partner: &Partner, tuning: &Tuning) -> u64 {
    match digest_wanted(partner) || partner.upload == crate::upload::Upload::Direct {
        true => u64::MAX,
        false => tuning.stripe_min(),
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(15),
            probe_idle_after: Duration::from_secs(20),
            chunk_size: 255 * 1024,
            writes_in_flight: 8,
            stripes: 8,
            stripe_min_bytes: 8 * 1024 * 1024,
            stale_temp_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// An authenticated SSH connection to the partner with one SFTP channel.
pub struct Session {
    /// Shared so that extra SFTP channels can be opened concurrently.
    ssh: Arc<client::Handle<Pinned>>,
    pub(crate) sftp: Arc<RawSftpSession>,
    pub(crate) addr: String,
    pub(crate) remote_directory: String,
    /// The partner's upload convention.
    pub(crate) upload: crate::upload::Upload,
    /// The partner's done marker, if any.
    pub(crate) marker: Option<crate::marker::DoneMarker>,
    /// Files in place that still await their done marker or their batch's control file: the
    /// connector's, shared by each of its sessions.
    pub(crate) awaiting: Arc<Mutex<Awaiting>>,
    /// Each file's SHA-256 is wanted (a `summary` done marker or control file): files then go as
    /// one stream from byte 0.
    pub(crate) digest_wanted: bool,
    /// The server offers `posix-rename@openssh.com` (atomic replace).
    pub(crate) posix_rename: bool,
    /// Bytes per WRITE after applying the server's limits.
    pub(crate) chunk_size: usize,
    pub(crate) writes_in_flight: usize,
    /// Most channels per file (the partner's `Parallelism`, else `Tuning::stripes`).
    pub(crate) stripes: usize,
    pub(crate) stripe_min_bytes: u64,
    /// SFTP channels opened besides `sftp`, kept for the next striped file.
    extra: Vec<Arc<RawSftpSession>>,
    /// Set once the server refused a channel: never ask for more than this many again.
    channel_cap: Option<usize>,
    /// Temporary files this connection could not remove because it broke mid-publish.
    pub(crate) orphans: Mutex<Vec<String>>,
    /// Temporary files being published now, for [`Connector::abandon`].
    pub(crate) unsettled: Unsettled,
    request_timeout: Duration,
    /// Directories known to exist, so a batch of files does not re-check them.
    pub(crate) known_dirs: Mutex<std::collections::HashSet<String>>,
    host_key: Fingerprint,
    negotiated: Negotiated,
    local_addr: std::net::SocketAddr,
    last_used: Mutex<Instant>,
}

impl Session {
    /// Connect, check the host key against the pins, log in and open the SFTP channel.
    pub async fn open(partner: &Partner, tuning: &Tuning) -> Result<Session, Error> {
        Session::open_with_channels(partner, tuning, 1).await
    }

    /// [`Session::open`] with `channels` SFTP channels opened at once (the extra ones best
    /// effort): what the first publish of a large file will stripe over.
    pub(crate) async fn open_with_channels(
        partner: &Partner,
        tuning: &Tuning,
        channels: usize,
    ) -> Result<Session, Error> {
        let addr = partner.addr();
        let crate::handshake::Handshake {
            mut ssh,
            local_addr,
            host_key,
            negotiated,
        } = handshake(
            &partner.host,
            partner.port,
            &partner.algorithms,
            &partner.trusted_host_keys,
            tuning,
        )
        .await?;

        bounded(
            tuning.auth_timeout,
            "logging in",
            &addr,
            crate::auth::authenticate(&mut ssh, partner, &addr),
        )
        .await?;

        // The main SFTP channel and any extra ones the first publish will want, all at once.
        // The first that opened is the main one (a server that limits sessions may have
        // refused any of them); only if none opened is the connection unusable.
        let ssh = Arc::new(ssh);
        let timeout = tuning.request_timeout;
        let mut opened = futures_util::future::join_all(
            (0..channels.max(1)).map(|_| open_sftp(&ssh, &addr, timeout)),
        )
        .await;
        let first = opened.iter().position(Result::is_ok).unwrap_or(0);
        let (sftp, posix_rename, limits) = opened.remove(first)?;
        let mut extras = Vec::new();
        let channel_cap = keep_channels(&mut extras, opened.into_iter().map(|r| r.map(|o| o.0)));
        // Without the limits extension the protocol only guarantees 32 KiB writes.
        let server_write = limits.and_then(|l| l.write_len).unwrap_or(32 * 1024) as usize;
        let chunk_size = tuning.chunk_size.clamp(1, server_write);
        tracing::debug!(%addr, %host_key, %negotiated, posix_rename, chunk_size, "connected");

        Ok(Session {
            ssh,
            sftp: Arc::new(sftp),
            addr,
            remote_directory: partner.remote_directory.clone(),
            upload: partner.upload.clone(),
            marker: partner.done_marker.clone(),
            awaiting: Arc::default(),
            digest_wanted: digest_wanted(partner),
            posix_rename,
            chunk_size,
            writes_in_flight: tuning.writes_in_flight.max(1),
            stripes: parallelism(partner, tuning),
            stripe_min_bytes: stripe_min(partner, tuning),
            extra: extras,
            channel_cap,
            orphans: Mutex::default(),
            unsettled: Unsettled::default(),
            request_timeout: tuning.request_timeout,
            known_dirs: Default::default(),
            host_key,
            negotiated,
            local_addr,
            last_used: Mutex::new(Instant::now()),
        })
    }

    /// The server's host key (already checked against the pins).
    pub fn host_key(&self) -> &Fingerprint {
        &self.host_key
    }

    /// The algorithms this connection negotiated.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Our end of the TCP connection (the partner's logs name this port).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Whether the SSH connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.ssh.is_closed()
    }

    /// A cheap round trip proving the connection and SFTP channel still answer.
    pub async fn probe(&self) -> Result<(), Error> {
        self.sftp
            .realpath(".")
            .await
            .map(|_| ())
            .map_err(|e| Error::sftp("realpath", ".", e))
    }

    /// Close the connection politely (best effort).
    pub async fn close(self) {
        let _ = self.sftp.close_session();
        let _ = self
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "done", "en")
            .await;
    }

    pub(crate) fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// Up to `want` SFTP channels on this connection, the main one first. Extra channels are
    /// opened as needed and kept; when the server refuses one (sshd's `MaxSessions`), the ones
    /// that opened are used and no more are asked for on this connection.
    pub(crate) async fn sftp_channels(&mut self, want: usize) -> Vec<Arc<RawSftpSession>> {
        let want = want.max(1).min(self.channel_cap.unwrap_or(usize::MAX));
        // All missing channels at once: over a WAN each open costs several round trips.
        let opened = futures_util::future::join_all(
            ((self.extra.len() + 1)..want)
                .map(|_| open_sftp(&self.ssh, &self.addr, self.request_timeout)),
        )
        .await;
        if let Some(cap) =
            keep_channels(&mut self.extra, opened.into_iter().map(|r| r.map(|o| o.0)))
        {
            self.channel_cap = Some(cap);
        }
        let mut all = vec![self.sftp.clone()];
        all.extend(self.extra.iter().take(want - 1).cloned());
        all
    }
}

/// Adds the channels that opened to `extra`. If the server refused one, says so and returns the
/// cap to keep: the channels there are now (the main one included).
fn keep_channels(
    extra: &mut Vec<Arc<RawSftpSession>>,
    opened: impl IntoIterator<Item = Result<RawSftpSession, Error>>,
) -> Option<usize> {
    let mut refused = None;
    for result in opened {
        match result {
            Ok(sftp) => extra.push(Arc::new(sftp)),
            Err(e) => refused = Some(e),
        }
    }
    refused.map(|error| {
        let cap = extra.len() + 1;
        tracing::warn!(%error, channels = cap, "the server refused another SFTP channel; striping over fewer");
        cap
    })
}

/// Opens one SFTP channel: session channel, `sftp` subsystem, version negotiation, and the
/// server's `limits@openssh.com` applied. Returns it with whether `posix-rename@openssh.com` is
/// offered and the limits.
///
/// Three round trips: the channel open; the subsystem request (OpenSSH opens a session channel
/// with a zero window and grants one only once the subsystem runs, so nothing can go before its
/// reply: waiting for it costs nothing and turns a refusal into a clear error); INIT with the
/// limits request right behind it (a server answers in order, so the VERSION arrives first).
async fn open_sftp(
    ssh: &client::Handle<Pinned>,
    addr: &str,
    request_timeout: Duration,
) -> Result<(RawSftpSession, bool, Option<Limits>), Error> {
    bounded(request_timeout, "opening an SFTP channel", addr, async {
        let ssh_err = |step, source| Error::Ssh {
            step,
            addr: addr.to_owned(),
            source,
        };
        let mut channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| ssh_err("channel open", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| ssh_err("sftp subsystem request", e))?;
        subsystem_started(&mut channel, addr).await?;
        let mut sftp = RawSftpSession::new_with_config(
            channel.into_stream(),
            russh_sftp::client::Config {
                request_timeout_secs: request_timeout.as_secs().max(1),
                ..Default::default()
            },
        );
        // Both requests leave on the first poll (`join` polls in order: INIT first). russh-sftp
        // has no way to send without awaiting, so they are awaited together; a reply with an id
        // before the VERSION would be refused, but a server answers in order.
        let (version, limits) = futures_util::future::join(sftp.init(), sftp.limits()).await;
        let version = version.map_err(|e| Error::sftp("init", "", e))?;
        let has = |name: &str| version.extensions.contains_key(name);
        // Not offered: whatever the server answered (OP_UNSUPPORTED) is ignored.
        let limits = match has("limits@openssh.com") {
            true => Some(Limits::from(
                limits.map_err(|e| Error::sftp("limits", "", e))?,
            )),
            false => None,
        };
        if let Some(l) = limits {
            sftp.set_limits(l);
        }
        Ok((sftp, has("posix-rename@openssh.com"), limits))
    })
    .await
}

/// Waits for the server's answer to the subsystem request: `Ok` once it runs; a refusal is
/// [`Error::SftpRefused`] (permanent: the account has no SFTP), a channel closed instead is a
/// transient `RequestDenied`.
async fn subsystem_started(
    channel: &mut russh::Channel<client::Msg>,
    addr: &str,
) -> Result<(), Error> {
    // Bounded by the caller's timeout; only window adjustments come before the answer.
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => {
                return Err(Error::SftpRefused {
                    addr: addr.to_owned(),
                })
            }
            Some(ChannelMsg::Close | ChannelMsg::Eof) | None => {
                return Err(Error::Ssh {
                    step: "sftp subsystem request",
                    addr: addr.to_owned(),
                    source: russh::Error::RequestDenied,
                })
            }
            Some(_) => {}
        }
    }
}

/// A mutex's guard; a panic elsewhere while it was held leaves plain data, still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `work` within `limit`, naming the step if it runs out.
pub(crate) async fn bounded<T>(
    limit: Duration,
    step: &'static str,
    addr: &str,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(Error::Timeout {
            step,
            addr: addr.to_owned(),
            after: limit,
        })
    })
}

/// Keeps one [`Session`] to a partner for many files, re-opening it when it has died.
pub struct Connector {
    partner: Arc<Partner>,
    tuning: Tuning,
    pub(crate) live: Option<Session>,
    opened: u64,
    /// Temporary files left by broken connections, removed by the next one.
    pub(crate) orphans: Vec<String>,
    /// See `Session::awaiting`: kept across connections.
    pub(crate) awaiting: Arc<Mutex<Awaiting>>,
}

impl Connector {
    /// A connector for `partner`; nothing is opened until the first use.
    pub fn new(partner: Partner, tuning: Tuning) -> Connector {
        Connector {
            partner: Arc::new(partner),
            tuning,
            live: None,
            opened: 0,
            orphans: Vec::new(),
            awaiting: Arc::default(),
        }
    }

    /// The timeouts and sizes in use.
    pub(crate) fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// See [`stripe_min`].
    pub(crate) fn stripe_min(&self) -> u64 {
        stripe_min(&self.partner, &self.tuning)
    }

    /// See [`parallelism`].
    pub(crate) fn parallelism(&self) -> usize {
        parallelism(&self.partner, &self.tuning)
    }

    /// The partner this connector talks to.
    pub fn partner(&self) -> &Partner {
        &self.partner
    }

    /// How many SSH connections this connector has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.opened
    }

    /// A live session: the kept one if it still answers, else a new one.
    pub async fn session(&mut self) -> Result<&mut Session, Error> {
        self.session_for(1).await
    }

    /// [`Connector::session`]; a new connection opens `channels` SFTP channels at once.
    pub(crate) async fn session_for(&mut self, channels: usize) -> Result<&mut Session, Error> {
        if let Some(s) = &self.live {
            let stale = s.is_closed()
                || (lock(&s.last_used).elapsed() > self.tuning.probe_idle_after
                    && bounded(self.tuning.request_timeout, "probing", &s.addr, s.probe())
                        .await
                        .is_err());
            if stale {
                tracing::info!(addr = %s.addr, "kept connection is gone; reconnecting");
                self.drop_live();
            }
        }
        if self.live.is_none() {
            let mut session =
                Session::open_with_channels(&self.partner, &self.tuning, channels).await?;
            session.awaiting = self.awaiting.clone();
            self.opened += 1;
            self.remove_orphans(&session).await;
            self.live = Some(session);
        }
        Ok(self.live.as_mut().expect("just set"))
    }

    /// Forget the kept session after an error that broke the connection.
    pub fn discard_if_broken(&mut self, err: &Error) {
        if err.connection_lost() {
            self.drop_live();
        }
    }

    pub(crate) fn drop_live(&mut self) {
        if let Some(s) = self.live.take() {
            self.orphans
                .extend(s.orphans.into_inner().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Best effort, bounded: delete the temporary files that broken connections left behind
    /// (their writers are gone with the connection). Each is tried once.
    async fn remove_orphans(&mut self, session: &Session) {
        // Each is forgotten only once tried: a caller's deadline may drop this future midway.
        while let Some(path) = self.orphans.last().cloned() {
            let removed = bounded(
                self.tuning.request_timeout,
                "removing a left-over temporary file",
                &session.addr,
                async {
                    session
                        .sftp
                        .remove(&path)
                        .await
                        .map_err(|e| Error::sftp("remove", &path, e))
                },
            )
            .await;
            match removed {
                Ok(_) => {
                    tracing::info!(temp_path = %path, "removed a temporary file left by a broken connection")
                }
                Err(e) => {
                    tracing::warn!(temp_path = %path, error = %e, "could not remove a left-over temporary file")
                }
            }
            self.orphans.pop();
        }
    }

    /// Close the kept session, if any.
    pub async fn close(&mut self) {
        if let Some(s) = self.live.take() {
            s.close().await;
        }
    }
}
