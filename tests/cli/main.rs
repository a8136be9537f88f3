//! Black-box tests of the `lifeboat` binary on real SQLite files and a local repository.

mod bitflips;
mod catalog;
mod chain;
mod common;
mod crash;
mod files;
mod flags;
mod hostile;
mod input;
mod integrity;
mod policy;
mod prune;
mod quickstart;
mod safety;
#[path = "../support/util.rs"]
mod util;
