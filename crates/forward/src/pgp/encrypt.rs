//! Encryption as a stream: the plaintext is read from an `AsyncRead`, encrypted by rpgp (a
//! synchronous `Read` → `Write` pipeline) on a blocking thread, and the ciphertext comes out of
//! an `AsyncRead` ([`Encrypting`]) through a bounded in-memory pipe.
//!
//! ```text
//! source (AsyncRead) ──block_on(read)──▶ rpgp MessageBuilder (compress?, SEIPD v1 AES-256)
//!     ──block_on(write_all)──▶ duplex pipe (PIPE_BYTES) ──▶ Encrypting (AsyncRead) ──▶ publish
//! ```
//!
//! Memory is bounded by the pipe, rpgp's partial-body chunk (512 KiB) and the compressor's
//! window, whatever the file's size. The reader never sees a short ciphertext as a whole one:
//! when the plaintext fails (a read error, or fewer or more bytes than announced) the stream
//! ends with that error, not with EOF.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ::pgp::composed::MessageBuilder;
use ::pgp::crypto::sym::SymmetricKeyAlgorithm;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::Pgp;

/// Bytes of ciphertext that may wait between the encrypting thread and the publisher.
const PIPE_BYTES: usize = 256 * 1024;

/// The ciphertext of a source, as it is produced ([`Pgp::encrypt`]).
pub struct Encrypting {
    pipe: DuplexStream,
    worker: Option<JoinHandle<io::Result<()>>>,
    plain: Arc<AtomicU64>,
}

impl Encrypting {
    /// Plaintext bytes read from the source so far (all of them once the stream has ended).
    pub fn plain_bytes(&self) -> Arc<AtomicU64> {
        self.plain.clone()
    }
}

impl Pgp {
    /// `source` encrypted to the partner's keys as it is read. `expected_len` is the plaintext
    /// length the source announced: a source that ends short (or runs long) fails the stream.
    /// `file_name` goes into the literal data packet (what `gpg --use-embedded-filename` uses).
    /// Must be called within a tokio runtime.
    pub fn encrypt<R>(&self, source: R, expected_len: Option<u64>, file_name: &str) -> Encrypting
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let (pipe, sink) = tokio::io::duplex(PIPE_BYTES);
        let plain = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(None));
        let handle = Handle::current();
        let reader = Plain {
            source,
            handle: handle.clone(),
            count: plain.clone(),
            expected_len,
            failed: failed.clone(),
        };
        let writer = Cipher { sink, handle };
        let (pgp, name) = (self.clone(), file_name.as_bytes().to_vec());
        let worker = tokio::task::spawn_blocking(move || {
            let built = pgp.write_message(name, reader, writer);
            // The source's own error says more than rpgp's wrapping of it.
            match failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
                Some(e) => Err(e),
                None => built.map_err(|e| io::Error::other(format!("OpenPGP encryption: {e}"))),
            }
        });
        Encrypting {
            pipe,
            worker: Some(worker),
            plain,
        }
    }

    fn write_message<R: Read, W: Write>(
        &self,
        name: Vec<u8>,
        reader: R,
        writer: W,
    ) -> ::pgp::errors::Result<()> {
        let mut rng = rand08::thread_rng();
        let mut builder = MessageBuilder::from_reader(name, reader)
            .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        for recipient in &self.recipients {
            recipient.add_to(&mut builder, &mut rng)?;
        }
        if let Some(algorithm) = self.compression.algorithm() {
            builder.compression(algorithm);
        }
        builder.to_writer(&mut rng, writer)
    }
}

impl AsyncRead for Encrypting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.pipe).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {}
            other => return other,
        }
        // The pipe is at its end: it counts as the end of the ciphertext only if the encryption
        // finished without error.
        let Some(worker) = self.worker.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = match Pin::new(worker).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(result)) => result,
            Poll::Ready(Err(e)) => Err(io::Error::other(format!(
                "the OpenPGP encryption task failed: {e}"
            ))),
        };
        self.worker = None;
        Poll::Ready(result)
    }
}

use std::future::Future;

/// The async source as a blocking `Read`, counting bytes and checking the announced length.
struct Plain<R> {
    source: R,
    handle: Handle,
    count: Arc<AtomicU64>,
    expected_len: Option<u64>,
    failed: Arc<Mutex<Option<io::Error>>>,
}

impl<R: AsyncRead + Unpin> Plain<R> {
    fn fail(&self, e: io::Error) -> io::Error {
        let copy = io::Error::new(e.kind(), e.to_string());
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        copy
    }
}

impl<R: AsyncRead + Unpin> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.handle.clone().block_on(self.source.read(buf)) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(e)),
        };
        let count = self.count.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        match self.expected_len {
            Some(expected) if (n == 0 && count < expected) || count > expected => {
                let problem =
                    format!("the source produced {count} bytes but {expected} were expected");
                Err(self.fail(io::Error::new(io::ErrorKind::UnexpectedEof, problem)))
            }
            _ => Ok(n),
        }
    }
}

/// The pipe's write half as a blocking `Write`; dropped (closing the pipe) when rpgp is done.
struct Cipher {
    sink: DuplexStream,
    handle: Handle,
}

impl Write for Cipher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.handle.clone().block_on(self.sink.write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
