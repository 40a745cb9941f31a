//! A watcher of the partner's upload directory during a transfer: what a partner polling for new
//! files would see. It lists the tree every millisecond or so and records every time a file under
//! its final name had a size other than the complete one, and how far the hidden temporary file
//! (`.name.<tag>.part`) has grown, so a test can strike mid-transfer and then assert that no
//! partial file was ever visible under a final name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the watcher saw, returned by [`Watch::stop`].
#[derive(Debug, Default)]
pub struct Seen {
    /// Each time the final name was seen with a size other than the expected one: (path, size).
    pub partial: Vec<(PathBuf, u64)>,
    /// The final name was seen complete at least once.
    pub complete: bool,
    /// Directory scans done (to show the watch was really running).
    pub scans: u64,
}

/// A running watcher; [`Watch::stop`] ends it.
pub struct Watch {
    stop: Arc<AtomicBool>,
    temp_bytes: Arc<AtomicU64>,
    thread: Option<JoinHandle<Seen>>,
}

impl Watch {
    /// Watches `dir` for the file `final_name` (a path relative to `dir`) that must only ever
    /// appear with `expected_len` bytes.
    pub fn start(dir: &Path, final_name: &str, expected_len: u64) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let temp_bytes = Arc::new(AtomicU64::new(0));
        let (dir, final_path) = (dir.to_owned(), dir.join(final_name));
        let thread = {
            let (stop, temp_bytes) = (stop.clone(), temp_bytes.clone());
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                while !stop.load(Ordering::Relaxed) {
                    seen.scans += 1;
                    let mut biggest_temp = 0;
                    for (path, len) in files(&dir) {
                        if path == final_path {
                            if len == expected_len {
                                seen.complete = true;
                            } else {
                                seen.partial.push((path, len));
                            }
                        } else if is_temp(&path) {
                            biggest_temp = biggest_temp.max(len);
                        }
                    }
                    temp_bytes.store(biggest_temp, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen
            })
        };
        Watch {
            stop,
            temp_bytes,
            thread: Some(thread),
        }
    }

    /// Size of the largest temporary file in the last scan (0: none).
    pub fn temp_bytes(&self) -> u64 {
        self.temp_bytes.load(Ordering::Relaxed)
    }

    /// Blocks until a temporary file holds at least `bytes`, at most `within`; true if it did.
    pub fn wait_for_temp_bytes(&self, bytes: u64, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.temp_bytes() >= bytes {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// Stops watching and returns what was seen.
    pub fn stop(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the watcher does not panic")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A publisher's temporary name: hidden, ending in `.part`.
pub fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(".part"))
}

/// Every regular file under `dir` with its size (entries vanishing mid-scan are skipped).
pub fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out
}
