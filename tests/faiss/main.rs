//! Black-box tests of the FAISS engine: real index files written by faiss-cpu
//! (tests/fixtures/make_faiss.py with the Python in `LIFEBOAT_TEST_PYTHON`), the real
//! `lifeboat` binary, a local repository and S3 (moto, started by scripts/test.sh).

#[path = "../support/util.rs"]
mod util;
// tests/cloud/common.rs names the Azurite account key; only its S3 and local helpers
// are used here.
#[path = "../support/azurite.rs"]
mod azurite;
#[path = "../cloud/common.rs"]
#[allow(dead_code)]
mod cloud;
#[path = "../support/moto.rs"]
mod moto;

mod backup;
mod common;
mod hooks;
mod restore;
