//! Output of child processes (hooks, neo4j-admin, stop/start commands): read on a
//! thread so a chatty child never blocks on a full pipe, keeping only the end of it,
//! where the reason for a failure usually is.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

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
