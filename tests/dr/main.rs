//! Black-box tests of `lifeboat dr` on real SQLite files and a local repository.

mod common;
mod crash;
mod drill;
mod run;
#[path = "../support/util.rs"]
mod util;
mod validation;
