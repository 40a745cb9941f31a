//! Feedback on stderr while work runs: a progress bar (bytes, rate, ETA; or objects done) when
//! stderr is a terminal that can draw one, plain log lines otherwise. Results go to stdout, never here.

use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use forward::RangeSource;
use indicatif::{ProgressBar, ProgressStyle};
use sftp_forward_core::event::ObjectRef;
use sftp_forward_core::source::{Body, Current, ObjectStore, Opened, StoreError};
use tokio::io::{AsyncRead, ReadBuf};

const BYTES: &str = "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}";
const ITEMS: &str = "{msg} [{wide_bar}] {pos}/{len} objects ETA {eta}";

/// A progress bar on a terminal, log lines elsewhere.
#[derive(Clone)]
pub struct Feedback {
    bar: ProgressBar,
    tty: bool,
}

impl Feedback {
    /// Bytes of one file: `[bar] 12.0 MiB/40.0 MiB 31.2 MiB/s ETA 1s`.
    pub fn bytes() -> Feedback {
        Feedback::new(0, BYTES)
    }

    /// Objects of a batch: `[bar] 3/10 objects ETA 4s`.
    pub fn items(total: u64) -> Feedback {
        Feedback::new(total, ITEMS)
    }

    fn new(len: u64, template: &str) -> Feedback {
        // indicatif hides the bar when stderr is not a terminal and also when `TERM` is unset or
        // `dumb`; a hidden bar drops `println`, so log lines are printed plainly in both cases.
        let bar = ProgressBar::new(len);
        let tty = !bar.is_hidden();
        if tty {
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
        }
        Feedback { bar, tty }
    }

    /// One log line, above the bar on a terminal.
    pub fn log(&self, line: impl AsRef<str>) {
        if self.tty {
            self.bar.println(line.as_ref());
        } else {
            eprintln!("{}", line.as_ref());
        }
    }

    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A reader that advances the bar by every byte it yields.
pub struct Metered<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> Metered<R> {
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        Metered { inner, bar }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Metered<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.bar.inc(read as u64);
        }
        polled
    }
}

/// An [`ObjectStore`] whose object bodies advance a byte bar (sized when the object is opened).
/// It also notes when S3 says the object does not exist (the forwarder treats that as nothing
/// to do, which is right for an event but not for an operator naming the object).
pub struct MeteredStore<S> {
    pub inner: S,
    pub bar: ProgressBar,
    pub missing: Arc<AtomicBool>,
}

impl<S> MeteredStore<S> {
    fn note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Missing { .. }) = &r {
            self.missing.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: ObjectStore> ObjectStore for MeteredStore<S> {
    async fn tags(&self, obj: &ObjectRef) -> Result<Vec<(String, String)>, StoreError> {
        self.note(self.inner.tags(obj).await)
    }

    async fn put_tags(
        &self,
        obj: &ObjectRef,
        tags: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        self.inner.put_tags(obj, tags).await
    }

    async fn open(&self, obj: &ObjectRef) -> Result<Opened, StoreError> {
        let opened = self.note(self.inner.open(obj).await)?;
        self.bar.set_length(opened.len);
        self.bar.set_position(0);
        Ok(Opened {
            body: Box::new(Metered::new(opened.body, self.bar.clone())),
            ..opened
        })
    }

    async fn current(&self, obj: &ObjectRef) -> Result<Option<Current>, StoreError> {
        self.inner.current(obj).await
    }

    fn can_read_ranges(&self) -> bool {
        self.inner.can_read_ranges()
    }

    async fn open_range(
        &self,
        obj: &ObjectRef,
        etag: &str,
        range: Range<u64>,
    ) -> Result<Body, StoreError> {
        let body = self.note(self.inner.open_range(obj, etag, range).await)?;
        Ok(Box::new(Metered::new(body, self.bar.clone())))
    }
}

/// A [`RangeSource`] whose every stripe moves the same progress bar.
pub struct MeteredRanges<S> {
    pub inner: S,
    pub bar: ProgressBar,
}

impl<S: RangeSource> RangeSource for MeteredRanges<S> {
    type Reader = Metered<S::Reader>;

    fn len(&self) -> u64 {
        self.inner.len()
    }

    async fn open(&self, range: Range<u64>) -> std::io::Result<Self::Reader> {
        Ok(Metered::new(
            self.inner.open(range).await?,
            self.bar.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_templates_are_valid() {
        for template in [BYTES, ITEMS] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
