//! Progress display: an indicatif bar (bytes, rate, ETA) on a terminal, nothing on a
//! pipe or under cron, where the log lines say what happened.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether to draw bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Bars when stderr is a terminal and output is not quiet or JSON.
    pub fn detect(quiet: bool, json: bool) -> Self {
        Progress {
            enabled: !quiet && !json && std::io::stderr().is_terminal(),
        }
    }

    /// Never draw.
    pub fn off() -> Self {
        Progress { enabled: false }
    }

    /// A byte bar labelled `label`, or `None` when bars are off.
    pub fn bytes(&self, label: &str, total: Option<u64>) -> Option<ProgressBar> {
        if !self.enabled {
            return None;
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        Some(bar)
    }
}
