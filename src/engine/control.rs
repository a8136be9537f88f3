//! Control of one restore attempt from outside it: cancellation, the commit fence
//! around the swap, and the marker that records a swap once it happened.
//!
//! A restore runs on a blocking thread that a timed-out caller cannot stop by dropping
//! a future. So the attempt checks its [`RestoreControl`] before every chunk it reads
//! and while it waits for a child process, and makes its swap through
//! [`RestoreControl::commit`]. The swap and [`RestoreControl::cancel`] exclude each
//! other: once `cancel` has returned, the attempt either swapped already (and `cancel`
//! says so) or never will. A retry can therefore never race the attempt before it on
//! the same target, and a rollback never sees a copy swapped in after it ran.
//!
//! The marker is how success is recorded by the restore itself: a small file written
//! and synced inside the fence, right after the swap, so that a resumed DR run adopts a
//! restore only when the marker says it completed, never from the look of the target.

use crate::error::{Error, Result};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Open,
    Cancelled,
    Committed,
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    reason: String,
    marker: Option<(PathBuf, Vec<u8>)>,
}

/// Shared between a restore attempt and whoever may have to stop it; clones share.
#[derive(Debug, Clone, Default)]
pub struct RestoreControl {
    inner: Arc<Mutex<Inner>>,
}

/// Message of the error a cancelled attempt stops with.
const CANCELLED: &str = "restore cancelled";

impl RestoreControl {
    /// A control that nothing has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the attempt: it fails at its next check and never swaps. Waits for a swap
    /// in progress to end. Returns true when the swap had already happened (the target
    /// holds the restored copy), false when it never will.
    pub fn cancel(&self, reason: impl Into<String>) -> bool {
        let mut inner = self.lock();
        match inner.state {
            State::Committed => true,
            State::Open | State::Cancelled => {
                inner.state = State::Cancelled;
                inner.reason = reason.into();
                false
            }
        }
    }

    /// Whether the attempt was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.lock().state == State::Cancelled
    }

    /// Whether the swap happened (the target was replaced).
    pub fn is_committed(&self) -> bool {
        self.lock().state == State::Committed
    }

    /// Fail when the attempt was cancelled; call it between units of work.
    pub fn check(&self) -> Result<()> {
        let inner = self.lock();
        match inner.state {
            State::Cancelled => Err(cancelled(&inner.reason)),
            _ => Ok(()),
        }
    }

    /// Write `body` to `path` (synced) right after the swap, inside the fence.
    pub fn set_marker(&self, path: PathBuf, body: Vec<u8>) {
        self.lock().marker = Some((path, body));
    }

    /// Make the swap, unless the attempt was cancelled; then write the marker. Nothing
    /// can cancel the attempt while `swap` runs. A swap that fails leaves the attempt
    /// open (the engine reports which parts were replaced).
    pub fn commit<T>(&self, swap: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut inner = self.lock();
        if inner.state == State::Cancelled {
            return Err(cancelled(&inner.reason));
        }
        // A kill here leaves the staging copy whole beside the untouched target.
        crate::failpoint::hit("restore.before-swap");
        let out = swap()?;
        inner.state = State::Committed;
        if let Some((path, body)) = &inner.marker {
            write_synced(path, body).map_err(|e| {
                Error::io(
                    format!(
                        "the restored copy is in place, but its completion marker {} was not written",
                        path.display()
                    ),
                    e,
                )
            })?;
        }
        Ok(out)
    }

    /// `r`, failing its next read once the attempt is cancelled: the check between
    /// chunks.
    pub fn reader<'a>(&self, r: &'a mut dyn Read) -> CancellableRead<'a> {
        CancellableRead {
            inner: r,
            control: self.clone(),
        }
    }
}

fn cancelled(reason: &str) -> Error {
    if reason.is_empty() {
        Error::failed(CANCELLED)
    } else {
        Error::failed(format!("{CANCELLED}: {reason}"))
    }
}

/// Whether `e` is the error of a cancelled attempt.
pub fn is_cancelled_error(e: &Error) -> bool {
    e.message().contains(CANCELLED)
}

fn write_synced(path: &std::path::Path, body: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A stream that fails once its restore is cancelled (see [`RestoreControl::reader`]).
pub struct CancellableRead<'a> {
    inner: &'a mut dyn Read,
    control: RestoreControl,
}

impl Read for CancellableRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.control.check().map_err(io::Error::other)?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_attempt_never_swaps_and_stops_reading() {
        let c = RestoreControl::new();
        let mut data: &[u8] = b"abc";
        let mut r = c.reader(&mut data);
        let mut buf = [0u8; 1];
        assert_eq!(r.read(&mut buf).unwrap(), 1);
        assert!(!c.cancel("the step timed out"));
        let err = r.read(&mut buf).unwrap_err();
        assert!(err.to_string().contains("the step timed out"), "{err}");
        let mut swapped = false;
        let err = c
            .commit(|| {
                swapped = true;
                Ok(())
            })
            .unwrap_err();
        assert!(is_cancelled_error(&err), "{err}");
        assert!(!swapped);
    }

    #[test]
    fn a_cancel_after_the_swap_reports_it_and_the_marker_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("step.restored.json");
        let c = RestoreControl::new();
        c.set_marker(marker.clone(), b"{}".to_vec());
        c.commit(|| Ok(())).unwrap();
        assert_eq!(std::fs::read(&marker).unwrap(), b"{}");
        assert!(c.cancel("late"), "the swap had happened");
        assert!(c.check().is_ok(), "a committed attempt is not cancelled");
    }
}
