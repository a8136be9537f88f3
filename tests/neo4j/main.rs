//! Black-box tests of the Neo4j engine: the real `lifeboat` binary against stand-in
//! programs (no Neo4j server runs here). The stand-ins in this folder check the exact
//! command lines and HTTP requests lifeboat makes, record each one, and share one state
//! file, so that a dump carries the graph and a load changes what is counted:
//! `standin_neo4j_admin.py` (neo4j-admin), `standin_ctl.py` (stop and start commands),
//! `standin_kubectl.py` (a `kubectl exec` wrapper) and `standin_neo4j_http.py` (the
//! HTTP transactional endpoint).

#[path = "../support/util.rs"]
mod util;

mod common;
mod offline;
mod online;
