//! `command` steps: a program with arguments (no shell), a timeout, captured output.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Output kept in the step's outputs (the whole of it goes to the capture file).
const KEEP: usize = 16 << 10;

/// Run `argv` within `timeout`; stdout and stderr are written to `capture`.
pub async fn run(
    argv: &[String],
    timeout: Duration,
    capture: &Path,
) -> Result<BTreeMap<String, String>> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::bad_input("command step with an empty argv"));
    };
    let shown = argv.join(" ");
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A timed-out command must not outlive its step.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("starting `{shown}`"), e))?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| Error::io(format!("running `{shown}`"), e))?,
        Err(_) => {
            return Err(Error::failed(format!(
                "`{shown}` did not finish within {}s (raise the step's timeout)",
                timeout.as_secs()
            ))
            .retryable(true));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(dir) = capture.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(capture, format!("$ {shown}\n{stdout}{stderr}"));
    let code = out.status.code().unwrap_or(-1);
    if !out.status.success() {
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(
            Error::failed(format!("`{shown}` exited with {}: {tail}", out.status)).retryable(true),
        );
    }
    let mut kept = stdout.trim_end().to_string();
    if kept.len() > KEEP {
        let mut cut = KEEP;
        while !kept.is_char_boundary(cut) {
            cut -= 1;
        }
        kept.truncate(cut);
    }
    Ok(BTreeMap::from([
        ("stdout".to_string(), kept),
        ("exit-code".to_string(), code.to_string()),
    ]))
}
