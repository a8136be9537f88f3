//! Black-box tests of the `lifeboat` binary on real SQLite files and a local repository.

mod catalog;
mod chain;
mod common;
mod crash;
mod files;
mod flags;
mod integrity;
mod policy;
mod prune;
mod quickstart;
#[path = "../support/util.rs"]
mod util;
