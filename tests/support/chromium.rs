//! Headless Chromium for the tests: a page loaded from a file, its DOM, console and
//! screenshots. Debian's `chromium` (scripts/test.sh installs it) or the binary named by
//! `LIFEBOAT_TEST_CHROMIUM`.
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use std::fs::{self, File};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A cold start on two busy cores can take many seconds; a hung one must still end.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Chromium: `LIFEBOAT_TEST_CHROMIUM`, else Debian's package.
pub fn chromium() -> PathBuf {
    let bin = std::env::var_os("LIFEBOAT_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        bin.is_file(),
        "Chromium not found at {}: run the tests through scripts/test.sh, which installs \
         Debian's chromium package, or point LIFEBOAT_TEST_CHROMIUM at a Chromium binary",
        bin.display()
    );
    bin
}

/// What one Chromium run left.
pub struct Run {
    /// What it printed (the DOM, with --dump-dom).
    pub stdout: String,
    /// Its log (console messages, with --enable-logging=stderr).
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Run {
    /// Every console message and uncaught error the page caused. Chromium logs each
    /// console message as `INFO:CONSOLE` whatever its level, so any such line counts:
    /// the page has no script, and a blocked load would be logged there too.
    pub fn console(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .collect()
    }
}

/// Runs headless Chromium on `page` with `args`, in a throw-away profile and HOME, with
/// every host name unresolvable: the page must need nothing from a network.
///
/// A browser that crashes or hangs while starting is tried once more (its output is
/// printed), so that a slow machine does not fail the suite; a page that loads but shows
/// the wrong thing fails at once, as nothing here retries an assertion.
pub fn run_chromium(page: &Path, args: &[&str]) -> Run {
    let bin = chromium();
    let mut last = String::new();
    for attempt in 1..=2 {
        match try_chromium(&bin, page, args) {
            Ok(run) => return run,
            Err(e) => {
                eprintln!("chromium attempt {attempt} failed: {e}");
                last = e;
            }
        }
    }
    panic!("chromium failed twice on {}: {last}", page.display());
}

fn try_chromium(bin: &Path, page: &Path, args: &[&str]) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    // Files, not pipes: Chromium's helper processes may keep a pipe open after it exits.
    let stdout = File::create(&out_path).map_err(|e| e.to_string())?;
    let stderr = File::create(&err_path).map_err(|e| e.to_string())?;
    let url = url::Url::from_file_path(page).map_err(|()| format!("{}", page.display()))?;
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(args)
        .arg(url.as_str())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // Its own process group, so a hung browser is ended with all its helpers.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err(format!(
                "no exit within {TIMEOUT:?}; stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = start.elapsed();
    let run = Run {
        stdout: fs::read_to_string(&out_path).map_err(|e| e.to_string())?,
        stderr: fs::read_to_string(&err_path).map_err(|e| e.to_string())?,
        took,
    };
    if !status.success() {
        return Err(format!("{status}; stderr:\n{}", run.stderr));
    }
    Ok(run)
}
