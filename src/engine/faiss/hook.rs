//! The `post-restore` command: run after the restored files are in place, with a
//! timeout, its output captured for the log and for the error message.

use crate::engine::child::{capture, collect, wait_until};
use crate::error::{Error, Result};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Output kept per stream: the end of it, where the reason for a failure usually is.
const KEEP: usize = 64 << 10;

/// What the command did.
#[derive(Debug)]
pub struct HookOutcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// End of its standard output.
    pub stdout: String,
    /// End of its standard error.
    pub stderr: String,
}

/// The last lines of `text`, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Run `argv` in `dir` (also given as `LIFEBOAT_RESTORE_DIR`, and the restore's
/// purpose as `LIFEBOAT_RESTORE_PURPOSE`: `restore` or `drill`), killing it after
/// `timeout`. A command that cannot start, fails or times out is an error that says the
/// restored files are already in place.
pub fn run(
    argv: &[String],
    dir: &Path,
    timeout: Duration,
    purpose: crate::engine::Purpose,
) -> Result<HookOutcome> {
    let shown = argv.join(" ");
    // The command runs in `dir`; a relative path in its environment would point elsewhere.
    let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let after = format!(
        "the restored files are in place in {}, but the post-restore command `{shown}`",
        dir.display()
    );
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::bad_input("post-restore: empty command"))?;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("LIFEBOAT_RESTORE_DIR", dir)
        .env("LIFEBOAT_RESTORE_PURPOSE", purpose.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            after_swap(format!(
                "{after} could not start: {e} (check `post-restore` in the source's policy)"
            ))
        })?;
    let out = capture(child.stdout.take().expect("piped"), KEEP);
    let err = capture(child.stderr.take().expect("piped"), KEEP);
    let started = Instant::now();
    let status = wait_until(&mut child, Some(started + timeout))
        .map_err(|e| Error::io(format!("waiting for post-restore command `{shown}`"), e))?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let (stdout, stderr) = (collect(&out), collect(&err));
        tracing::warn!(command = %shown, ?timeout, stdout = %stdout, stderr = %stderr, "post-restore command timed out and was killed");
        return Err(after_swap(format!(
            "{after} timed out after {}s and was killed (raise `post-restore-timeout`, or make the command return sooner){}",
            timeout.as_secs_f64(),
            output_hint(&stdout, &stderr)
        )));
    };
    let (stdout, stderr) = (collect(&out), collect(&err));
    if !status.success() {
        return Err(after_swap(format!(
            "{after} failed ({status}){}",
            output_hint(&stdout, &stderr)
        )));
    }
    Ok(HookOutcome {
        status,
        stdout,
        stderr,
    })
}

/// The error for a command that did not succeed. The files are already swapped in, and
/// the restore use case tries the next repository on any error but bad input: that
/// would restore the same files again and run the command once more per repository.
/// Bad input stops it, and a command that cannot start, fails or hangs is most often a
/// matter of the policy's `post-restore`.
fn after_swap(message: String) -> Error {
    Error::bad_input(message)
}

fn output_hint(stdout: &str, stderr: &str) -> String {
    match (stderr.is_empty(), stdout.is_empty()) {
        (false, _) => format!("; its stderr ends: {}", tail(stderr)),
        (true, false) => format!("; its stdout ends: {}", tail(stdout)),
        (true, true) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_command_runs_in_the_target_folder_with_its_output_captured() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(
            &argv(&[
                "sh",
                "-c",
                "echo hello; echo oops >&2; pwd; echo $LIFEBOAT_RESTORE_DIR",
            ]),
            dir.path(),
            Duration::from_secs(10),
            crate::engine::Purpose::Real,
        )
        .unwrap();
        assert!(o.status.success());
        let real = dir.path().canonicalize().unwrap();
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(lines[0], "hello");
        assert_eq!(Path::new(lines[1]).canonicalize().unwrap(), real);
        assert_eq!(lines[2], dir.path().display().to_string());
        assert_eq!(o.stderr, "oops");
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &argv(&[
                "sh",
                "-c",
                "echo first >&2; echo 'no such deployment' >&2; exit 3",
            ]),
            dir.path(),
            Duration::from_secs(10),
            crate::engine::Purpose::Real,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("restored files are in place"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("first | no such deployment"), "{msg}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let err = run(
            &argv(&["sleep", "30"]),
            dir.path(),
            Duration::from_millis(300),
            crate::engine::Purpose::Real,
        )
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(err.to_string().contains("timed out after 0.3s"), "{err}");
    }

    #[test]
    fn a_missing_program_says_which_key_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &argv(&["/nonexistent/lifeboat-hook"]),
            dir.path(),
            Duration::from_secs(1),
            crate::engine::Purpose::Real,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`post-restore`"), "{err}");
    }
}
