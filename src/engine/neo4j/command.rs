//! Child processes of the Neo4j engine: `neo4j-admin` (through the wrapper), the
//! `stop` and `start` commands, and the wrapper's file commands. Their stderr is kept
//! for error messages; bounded work runs under a timeout.

use crate::engine::child::{capture, collect, wait_until};
use crate::error::{Error, Result};
use std::io::{self, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Output kept per stream: the end of it, where the reason for a failure usually is.
const KEEP: usize = 16 << 10;

/// A command line as shown in messages (it never holds a secret: the password only
/// travels in HTTP headers).
pub(super) fn shown(argv: &[String]) -> String {
    argv.join(" ")
}

/// The last lines of a command's stderr, for an error message.
fn said(stderr: &str) -> String {
    if stderr.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = stderr.lines().collect();
    format!(
        "; its stderr ends: {}",
        lines[lines.len().saturating_sub(5)..].join(" | ")
    )
}

fn spawn(argv: &[String], stdin: Stdio, stdout: Stdio, key: &str) -> Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::bad_input(format!("neo4j source: `{key}` is empty")))?;
    Command::new(program)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::failed(format!(
                "neo4j source: `{}` could not start: {e} (check `{key}` in the source's policy)",
                shown(argv)
            ))
        })
}

/// Run `argv` to its end and return its stdout; killed after `timeout` when given.
/// `key` is the policy key that configures the command, named in errors.
pub(super) fn run(argv: &[String], timeout: Option<Duration>, key: &str) -> Result<String> {
    let started = Instant::now();
    let mut child = spawn(argv, Stdio::null(), Stdio::piped(), key)?;
    let out = capture(child.stdout.take().expect("piped"), KEEP);
    let err = capture(child.stderr.take().expect("piped"), KEEP);
    let status = wait_until(&mut child, timeout.map(|t| started + t))
        .map_err(|e| Error::io(format!("waiting for `{}`", shown(argv)), e))?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = collect(&err);
        return Err(Error::failed(format!(
            "neo4j source: `{}` timed out after {}s and was killed (raise `command-timeout`){}",
            shown(argv),
            timeout.unwrap_or_default().as_secs_f64(),
            said(&stderr)
        )));
    };
    let (stdout, stderr) = (collect(&out), collect(&err));
    tracing::debug!(command = %shown(argv), %status, elapsed = ?started.elapsed(), "command ended");
    if !status.success() {
        return Err(Error::failed(format!(
            "neo4j source: `{}` failed ({status}){}",
            shown(argv),
            said(&stderr)
        )));
    }
    Ok(stdout)
}

/// Feed `stream` into the stdin of `argv` and wait for it to succeed. A backup that
/// cannot be read (a hash mismatch is an integrity error) kills the command, so it never
/// finishes on a truncated input, and keeps its error kind.
pub(super) fn feed(argv: &[String], stream: &mut dyn Read, key: &str) -> Result<()> {
    let mut child = spawn(argv, Stdio::piped(), Stdio::null(), key)?;
    let err = capture(child.stderr.take().expect("piped"), KEEP);
    let mut stdin = child.stdin.take().expect("piped");
    let mut buf = vec![0u8; 1 << 20];
    let mut refused = None;
    let input: Result<()> = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(crate::pipeline::read_error("reading the backup", e)),
        };
        if let Err(e) = stdin.write_all(&buf[..n]) {
            refused = Some(e);
            break Ok(());
        }
    };
    drop(stdin);
    if input.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for `{}`", shown(argv)), e))?;
    let stderr = collect(&err);
    input?;
    if !status.success() || refused.is_some() {
        let why = refused.map_or(String::new(), |e| {
            format!(", it stopped reading its input: {e}")
        });
        return Err(Error::failed(format!(
            "neo4j source: `{}` failed ({status}{why}){}",
            shown(argv),
            said(&stderr)
        )));
    }
    Ok(())
}

/// Runs once when a [`ChildReader`] ends; told whether the stream was complete.
pub(super) type OnEnd = Box<dyn FnOnce(bool) -> Result<()> + Send>;

/// The stdout of a child as a stream. At its end the exit status is checked; then, and
/// also on a read error or when dropped early, `on_end` runs exactly once (to start a
/// stopped server again, or remove a backup folder).
pub(super) struct ChildReader {
    child: Child,
    stdout: ChildStdout,
    stderr: mpsc::Receiver<Vec<u8>>,
    shown: String,
    ended: bool,
    on_end: Option<OnEnd>,
}

impl ChildReader {
    /// Start `argv` with its stdout as the stream. When it cannot start, `on_end` runs
    /// before the error is returned.
    pub(super) fn spawn(argv: &[String], key: &str, on_end: OnEnd) -> Result<ChildReader> {
        let mut child = match spawn(argv, Stdio::null(), Stdio::piped(), key) {
            Ok(c) => c,
            Err(e) => {
                return Err(match on_end(false) {
                    Ok(()) => e,
                    Err(after) => e.context(after.message()),
                });
            }
        };
        let stderr = capture(child.stderr.take().expect("piped"), KEEP);
        let stdout = child.stdout.take().expect("piped");
        Ok(ChildReader {
            child,
            stdout,
            stderr,
            shown: shown(argv),
            ended: false,
            on_end: Some(on_end),
        })
    }

    fn end(&mut self, complete: bool) -> Result<()> {
        match self.on_end.take() {
            Some(f) => f(complete),
            None => Ok(()),
        }
    }

    /// Both failures in one message: the stream's, then what ending it did.
    fn fail(&mut self, failure: String) -> io::Error {
        match self.end(false) {
            Ok(()) => io::Error::other(failure),
            Err(after) => io::Error::other(format!("{failure}; then {after}")),
        }
    }
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        match self.stdout.read(buf) {
            Ok(0) => {
                self.ended = true;
                let status = self.child.wait();
                let stderr = collect(&self.stderr);
                match status {
                    Ok(s) if s.success() => {
                        self.end(true).map_err(io::Error::other)?;
                        Ok(0)
                    }
                    Ok(s) => {
                        Err(self.fail(format!("`{}` failed ({s}){}", self.shown, said(&stderr))))
                    }
                    Err(e) => Err(self.fail(format!("waiting for `{}`: {e}", self.shown))),
                }
            }
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.ended = true;
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(self.fail(format!("reading from `{}`: {e}", self.shown)))
            }
        }
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        if !self.ended {
            // Abandoned (an upload failed): stop the child before ending.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Err(e) = self.end(false) {
            tracing::error!(command = %self.shown, error = %e, "ending an abandoned stream failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn recorder() -> (Arc<Mutex<Vec<bool>>>, OnEnd) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        (
            calls,
            Box::new(move |complete| {
                c.lock().unwrap().push(complete);
                Ok(())
            }),
        )
    }

    #[test]
    fn a_stream_read_to_its_end_ends_once_as_complete() {
        let (calls, on_end) = recorder();
        let mut r = ChildReader::spawn(&argv(&["printf", "abc"]), "k", on_end).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        drop(r);
        assert_eq!(out, "abc");
        assert_eq!(*calls.lock().unwrap(), vec![true]);
    }

    #[test]
    fn a_failing_child_ends_once_as_incomplete_with_its_stderr() {
        let (calls, on_end) = recorder();
        let mut r = ChildReader::spawn(
            &argv(&["sh", "-c", "printf part; echo 'disk gone' >&2; exit 3"]),
            "k",
            on_end,
        )
        .unwrap();
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        drop(r);
        assert!(e.to_string().contains("disk gone"), "{e}");
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        assert_eq!(*calls.lock().unwrap(), vec![false]);
    }

    #[test]
    fn a_dropped_stream_kills_the_child_and_ends_once() {
        let (calls, on_end) = recorder();
        let mut r = ChildReader::spawn(&argv(&["yes"]), "k", on_end).unwrap();
        let mut buf = [0u8; 16];
        r.read_exact(&mut buf).unwrap();
        drop(r);
        assert_eq!(*calls.lock().unwrap(), vec![false]);
    }

    #[test]
    fn a_missing_program_still_ends_and_names_the_key() {
        let (calls, on_end) = recorder();
        let e = ChildReader::spawn(&argv(&["/nonexistent/neo4j-admin"]), "neo4j-admin", on_end)
            .err()
            .unwrap();
        assert!(e.to_string().contains("`neo4j-admin`"), "{e}");
        assert_eq!(*calls.lock().unwrap(), vec![false]);
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let t = Instant::now();
        let e = run(
            &argv(&["sleep", "30"]),
            Some(Duration::from_millis(200)),
            "stop",
        )
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
