//! One bounded retry for the places where AWS is eventually consistent or asynchronous (in the
//! spirit of terraform-provider-aws's `RetryWhenNotFound` / `RetryWhenAWSErrCodeEquals`): each call
//! site names what it waits for and which error codes mean "not yet"; anything else fails at once.
//!
//! Backoff: 0.5 s doubling to 10 s, so a lag of a second costs about a second and a lag of minutes
//! (NAT gateways, Lambda's network interfaces) costs at most one request every 10 s. Progress is
//! printed on the first refusal and then every 15 s, so an operator never watches a silent wait.

use std::future::Future;
use std::time::Duration;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::time::Instant;

/// The first pause after a refusal.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(10);
/// How often a long wait says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Bounded, growing pauses with progress lines.
pub(crate) struct Backoff {
    what: String,
    limit: Duration,
    start: Instant,
    pause: Duration,
    last_note: Option<Instant>,
}

impl Backoff {
    /// Waits for `what` (said in progress lines) for at most `limit`.
    pub(crate) fn new(what: impl Into<String>, limit: Duration) -> Self {
        Backoff {
            what: what.into(),
            limit,
            start: Instant::now(),
            pause: FIRST_PAUSE,
            last_note: None,
        }
    }

    /// Sleeps before the next attempt and returns true, or returns false when the next attempt
    /// would start after the limit. `why` (an error code or a state) goes into the progress line.
    pub(crate) async fn pause(&mut self, why: &str) -> bool {
        let elapsed = self.start.elapsed();
        if elapsed + self.pause > self.limit {
            return false;
        }
        let due = self.last_note.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
        if due {
            println!(
                "  … waiting for {} ({why}; {}s so far, at most {}s)",
                self.what,
                elapsed.as_secs(),
                self.limit.as_secs()
            );
            self.last_note = Some(Instant::now());
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        true
    }
}

/// Runs `call` until it succeeds, retrying while it fails with one of `codes` (AWS has not caught
/// up yet), for at most `limit`. Any other error, or the last refusal once the limit is reached,
/// is returned for the caller to map.
pub(crate) async fn when_codes<T, E, F, Fut>(
    waiting_for: &str,
    codes: &[&str],
    limit: Duration,
    mut call: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ProvideErrorMetadata,
{
    let mut backoff = Backoff::new(waiting_for, limit);
    loop {
        match call().await {
            Err(e) if e.code().is_some_and(|c| codes.contains(&c)) => {
                let code = e.code().unwrap_or_default().to_owned();
                if !backoff.pause(&code).await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

/// Polls `check` until it returns `Ok(value)`, for at most `limit`; `None` when time ran out.
/// `check` returns `Err(state)` with the state it saw (for the progress line) while not done.
pub(crate) async fn until<T, F, Fut>(
    waiting_for: &str,
    limit: Duration,
    mut check: F,
) -> crate::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::Result<Result<T, String>>>,
{
    let mut backoff = Backoff::new(waiting_for, limit);
    loop {
        match check().await? {
            Ok(v) => return Ok(Some(v)),
            Err(state) => {
                if !backoff.pause(&state).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// How long to retry deletes refused because something still uses the resource, and to wait for
/// Lambda to release its network interfaces: up to ~40 minutes after the function is gone.
pub(crate) const IN_USE_WAIT: Duration = Duration::from_secs(45 * 60);
/// The codes of a delete refused because something still uses the resource.
pub(crate) const IN_USE: &[&str] = &["DependencyViolation", "InvalidIPAddress.InUse"];

/// Runs `delete` until it succeeds, retrying while AWS answers with one of the `in_use` codes (at
/// most `limit`); a not-found answer (`gone` codes) counts as success.
pub(crate) async fn delete_when_in_use<F, Fut, T, E>(
    operation: &'static str,
    what: &str,
    in_use: &[&str],
    gone: &[&str],
    limit: Duration,
    delete: F,
) -> crate::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let waiting = format!("{what} to be free to delete");
    match when_codes(&waiting, in_use, limit, delete).await {
        Ok(_) => Ok(()),
        Err(e) if e.code().is_some_and(|c| gone.contains(&c)) => Ok(()),
        Err(e) => Err(crate::error::aws(operation, what)(e)),
    }
}
