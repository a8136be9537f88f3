//! Output of child processes (hooks, neo4j-admin, stop/start commands): read on a
//! thread so a chatty child never blocks on a full pipe, keeping only the end of it,
//! where the reason for a failure usually is.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long to wait for the output after the command ended or was killed: a child it
/// started may still hold its pipes open, and must not hold up the caller.
pub(crate) const DRAIN: Duration = Duration::from_secs(2);

/// Read a stream to its end on a thread, keeping its last `keep` bytes.
pub(crate) fn capture(mut r: impl Read + Send + 'static, keep: usize) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * keep {
                kept.drain(..kept.len() - keep);
            }
        }
        if kept.len() > keep {
            kept.drain(..kept.len() - keep);
        }
        let _ = tx.send(kept);
    });
    rx
}

/// What a captured stream held, once its writer is gone (or after [`DRAIN`]), without
/// trailing white space.
pub(crate) fn collect(rx: &mpsc::Receiver<Vec<u8>>) -> String {
    let bytes = rx.recv_timeout(DRAIN).unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

/// Wait for `child` until `deadline` (forever without one); `None` when it is still
/// running then.
pub(crate) fn wait_until(
    child: &mut Child,
    deadline: Option<Instant>,
) -> std::io::Result<Option<ExitStatus>> {
    let Some(deadline) = deadline else {
        return child.wait().map(Some);
    };
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}
