//! Black-box tests of `lifeboat dr` on real SQLite files and a local repository.

mod common;
mod crash;
mod drill;
mod run;
mod steps;
#[path = "../support/util.rs"]
mod util;
mod validation;
