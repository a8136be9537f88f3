//! Black-box tests of `lifeboat` against real S3 APIs (moto, started by scripts/test.sh)
//! and local repositories, with a fault-injecting proxy in between where needed.

#[path = "../support/azurite.rs"]
mod azurite;
#[path = "../support/moto.rs"]
mod moto;
#[path = "../support/proxy.rs"]
mod proxy;
#[path = "../support/util.rs"]
mod util;

mod common;
mod doctor;
mod fanout;
mod faults;
mod secrets;
