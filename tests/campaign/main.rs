//! The kill campaign: the real `lifeboat` binary is killed with SIGKILL at random moments
//! of `backup` (local repository and S3 on moto), `prune`, `restore` and `dr run`, and
//! what it leaves behind is checked as a user would rely on it:
//!
//! - every listed backup verifies, and restores to the content it was taken from;
//! - no manifest without its complete data object;
//! - `catalog rebuild`, in place and into a fresh catalog, lists what the catalog lists;
//! - the next run of the killed command succeeds;
//! - a restore target holds its old content or the complete new one, never a mix;
//! - after the next run, no staging leftovers (hidden `lifeboat` siblings of targets and
//!   sources, spool files).
//!
//! A kill lands anywhere in the command's life: its delay is drawn from a seeded RNG,
//! uniform over the measured duration of an unkilled run of the same command. The seed is
//! printed first; `LIFEBOAT_CAMPAIGN_SEED=N` replays the same delays.
//!
//! Each test runs its trials to the end and then fails listing every broken promise, with
//! the seed and the trial, so one run shows the whole picture. The short forms (3 trials
//! per command) run in CI; the long forms (30 trials) are ignored by default:
//! `cargo nextest run --test campaign --run-ignored only`.

#[allow(dead_code, unused_imports)]
#[path = "../cli/common.rs"]
mod common;
#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/util.rs"]
mod util;

mod record;
mod runs;
mod set;

use runs::{backup_campaign, dr_campaign, prune_campaign, restore_campaign};
use set::Set;

/// Trials per command in CI.
const SHORT: usize = 3;
/// Trials per command in the long form.
const LONG: usize = 30;

// ---------------------------------------------------------------------------------------
// The tests: a short form per command in CI, a long form ignored by default.

#[test]
fn backup_killed_at_random_moments_leaves_only_restorable_backups() {
    backup_campaign("backup-local", Set::local(), SHORT);
}

#[test]
fn backup_to_s3_killed_at_random_moments_leaves_only_restorable_backups() {
    backup_campaign("backup-s3", Set::s3(), SHORT);
}

#[test]
fn prune_killed_at_random_moments_keeps_the_newest_backup() {
    prune_campaign(SHORT);
}

#[test]
fn restore_killed_at_random_moments_leaves_old_or_new_content() {
    restore_campaign(SHORT);
}

#[test]
fn dr_run_killed_at_random_moments_resumes_to_the_new_content() {
    dr_campaign(SHORT);
}

#[test]
#[ignore = "long kill campaign (30 trials): run with --run-ignored only"]
fn long_backup_killed_at_random_moments_leaves_only_restorable_backups() {
    backup_campaign("backup-local", Set::local(), LONG);
}

#[test]
#[ignore = "long kill campaign (30 trials): run with --run-ignored only"]
fn long_backup_to_s3_killed_at_random_moments_leaves_only_restorable_backups() {
    backup_campaign("backup-s3", Set::s3(), LONG);
}

#[test]
#[ignore = "long kill campaign (30 trials): run with --run-ignored only"]
fn long_prune_killed_at_random_moments_keeps_the_newest_backup() {
    prune_campaign(LONG);
}

#[test]
#[ignore = "long kill campaign (30 trials): run with --run-ignored only"]
fn long_restore_killed_at_random_moments_leaves_old_or_new_content() {
    restore_campaign(LONG);
}

#[test]
#[ignore = "long kill campaign (30 trials): run with --run-ignored only"]
fn long_dr_run_killed_at_random_moments_resumes_to_the_new_content() {
    dr_campaign(LONG);
}
