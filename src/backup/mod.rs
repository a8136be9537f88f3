//! Use cases: back up, list, verify, restore, prune, rebuild the catalog.
//!
//! Each takes a [`Context`] (validated policies, catalog, stores, clock) and returns a
//! report that the CLI prints as text or JSON.

pub mod anomaly;
pub mod compare;
pub mod dating;
pub mod list;
pub mod prune;
pub mod reconcile;
pub mod restore;
pub mod retention;
pub mod run;
pub mod trial;
pub mod verify;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::engine::spool::Spool;
use crate::error::{Error, Result};
use crate::policy::PolicySet;
use crate::progress::Progress;
use crate::storage::{self, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Everything a use case needs.
pub struct Context {
    /// The validated policy set.
    pub policies: PolicySet,
    /// The catalog.
    pub catalog: Catalog,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where engines spool files.
    pub spool: Spool,
    /// Progress display.
    pub progress: Progress,
    stores: BTreeMap<String, Arc<dyn Store>>,
}

impl Context {
    /// Build the context; stores are opened (not contacted) for every repository.
    pub async fn new(
        policies: PolicySet,
        catalog: Catalog,
        clock: Arc<dyn Clock>,
        spool: Spool,
        progress: Progress,
    ) -> Result<Self> {
        let mut stores = BTreeMap::new();
        for (name, repo) in &policies.repositories {
            let store = storage::open(repo)
                .await
                .map_err(|e| e.context(format!("repository {name}")))?;
            stores.insert(name.clone(), store);
        }
        Ok(Context {
            policies,
            catalog,
            clock,
            spool,
            progress,
            stores,
        })
    }

    /// The store of repository `name`.
    pub fn store(&self, name: &str) -> Result<Arc<dyn Store>> {
        self.stores.get(name).cloned().ok_or_else(|| {
            Error::bad_input(format!(
                "unknown repository `{name}` (declared: {})",
                self.stores.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Every repository name, in name order.
    pub fn repository_names(&self) -> Vec<String> {
        self.stores.keys().cloned().collect()
    }
}

/// Run a blocking closure off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
