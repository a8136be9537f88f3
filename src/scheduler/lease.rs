//! Leases: exclusion of backups of one source across processes and hosts, kept in the
//! source's first repository, with no manual unlock step.
//!
//! A lease is an object `_leases/SOURCE/GENERATION` holding its holder and expiry.
//! Taking the lease means creating generation N+1 with a create-only put, allowed only
//! when generation N has expired or was released; of two takers, the store lets one
//! create it. A holder renews its object every third of the time to live and checks
//! that no later generation exists; one that finds a later generation has lost the
//! lease (it was too slow to renew) and must stop. A holder that dies stops renewing,
//! and the lease is taken over once it expires: a stale lock never stops backups.
//!
//! Generations only grow. A release marks the object expired instead of deleting it,
//! so a taker working from an old listing can never recreate a generation that is
//! still in use; after creating its generation a taker lists again and backs off when
//! a later one exists. Generations older than the previous one are removed.

use crate::error::{Error, ErrorKind, Result};
use crate::storage::{PutOptions, StorageError, Store, layout};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::{debug, warn};

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LeaseRecord {
    /// Source.
    pub source: String,
    /// Who holds it: `host/pid/random`.
    pub holder: String,
    /// Its generation.
    pub generation: u64,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed; a released lease has expired.
    pub expires_at: DateTime<Utc>,
    /// The holder's process, so that a taker on the same machine can see it has died
    /// (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
}

/// A process, named precisely enough that another process can tell for sure that it
/// no longer runs: same host name, same PID namespace and same boot, and no such pid.
/// Anything less certain (another machine, a container with its own PID namespace
/// that shares the host name, a record without these fields) counts as alive, so a
/// live holder is never taken over: the lease then lapses at its expiry as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Process {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// The PID namespace (`pid:[4026531836]`), where the system tells it.
    pub pid_ns: Option<String>,
    /// The kernel's boot id, where the system tells it.
    pub boot_id: Option<String>,
}

impl Process {
    /// This process.
    pub fn me() -> Process {
        Process {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            pid_ns: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }

    /// Whether this process is known for sure to have ended.
    pub fn is_known_dead(&self) -> bool {
        let me = Process::me();
        let same_world = self.host == me.host
            && self.pid_ns.is_some()
            && self.pid_ns == me.pid_ns
            && self.boot_id.is_some()
            && self.boot_id == me.boot_id;
        same_world
            && self.pid != me.pid
            && !std::path::Path::new("/proc")
                .join(self.pid.to_string())
                .exists()
    }
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn Store>,
    record: LeaseRecord,
    ttl: Duration,
}

/// A holder id for this process: `host/pid/random`.
pub fn holder_id() -> String {
    format!(
        "{}/{}/{:04x}",
        gethostname::gethostname().to_string_lossy(),
        std::process::id(),
        rand::random::<u16>()
    )
}

fn locked(source: &str, rec: &LeaseRecord) -> Error {
    Error::new(
        ErrorKind::Locked,
        format!(
            "source {source} is locked by {} until {} (lease generation {}); it is taken over when it expires",
            rec.holder,
            rec.expires_at.format("%Y-%m-%dT%H:%M:%SZ"),
            rec.generation
        ),
    )
}

/// The newest generation and its record (`None` for a source never leased). A record
/// that cannot be read counts as held until the time to live has passed since it was
/// written, so a damaged object delays backups but never lets two run at once.
async fn newest(
    store: &dyn Store,
    source: &str,
    ttl: Duration,
) -> Result<Option<(u64, LeaseRecord)>> {
    let listing = store.list(&layout::lease_prefix(source)).await?;
    let Some((generation, meta)) = listing
        .iter()
        .filter_map(|o| layout::parse_lease_key(source, &o.key).map(|g| (g, o)))
        .max_by_key(|(g, _)| *g)
    else {
        return Ok(None);
    };
    let rec = match store.get(&meta.key).await {
        Ok(bytes) => serde_json::from_slice::<LeaseRecord>(&bytes).ok(),
        // Released and cleaned between list and get: a later generation is free.
        Err(StorageError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let rec = rec.unwrap_or_else(|| LeaseRecord {
        source: source.to_string(),
        holder: format!("unreadable lease object {}", meta.key),
        generation,
        acquired_at: meta.modified,
        expires_at: meta.modified + ttl,
        process: None,
    });
    Ok(Some((generation, rec)))
}

/// The newest lease record of `source` in `store`, live or not (`None`: never leased).
pub async fn newest_record(
    store: &dyn Store,
    source: &str,
    ttl: Duration,
) -> Result<Option<LeaseRecord>> {
    Ok(newest(store, source, ttl).await?.map(|(_, rec)| rec))
}

impl Lease {
    /// Take the lease of `source` in `store` for `ttl`, or fail with
    /// [`ErrorKind::Locked`] naming the live holder.
    pub async fn acquire(
        store: Arc<dyn Store>,
        source: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease> {
        let current = newest(store.as_ref(), source, ttl).await?;
        if let Some((_, rec)) = &current
            && rec.expires_at > now
        {
            // A holder killed on this machine is known dead: waiting out its lease
            // would only stop backups (and prunes) for nothing.
            if !rec.process.as_ref().is_some_and(Process::is_known_dead) {
                return Err(locked(source, rec));
            }
            debug!(source, holder = %rec.holder, "the lease holder died on this machine: taking the lease over");
        }
        let generation = current.as_ref().map_or(1, |(g, _)| g + 1);
        let record = LeaseRecord {
            source: source.to_string(),
            holder: holder.to_string(),
            generation,
            acquired_at: now,
            expires_at: now + ttl,
            process: Some(Process::me()),
        };
        let key = layout::lease_key(source, generation);
        match store
            .put(&key, encode(&record), &PutOptions::create())
            .await
        {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => {
                // Another taker created this generation first.
                let winner = newest(store.as_ref(), source, ttl).await?;
                return Err(match winner {
                    Some((_, rec)) => locked(source, &rec),
                    None => Error::new(
                        ErrorKind::Locked,
                        format!("source {source}: another process took the lease first"),
                    ),
                });
            }
            Err(e) => return Err(Error::from(e).context(format!("taking the lease of {source}"))),
        }
        let lease = Lease { store, record, ttl };
        // A taker that listed before a later generation existed backs off.
        if let Err(e) = lease.check_newest().await {
            let _ = lease.store.delete(&key).await;
            return Err(e);
        }
        // Generations before the previous one can no longer matter.
        if generation > 2 {
            let listing = lease.store.list(&layout::lease_prefix(source)).await?;
            for o in listing {
                if layout::parse_lease_key(source, &o.key).is_some_and(|g| g + 1 < generation) {
                    let _ = lease.store.delete(&o.key).await;
                }
            }
        }
        debug!(source, generation, holder, "lease taken");
        Ok(lease)
    }

    /// The lease as recorded.
    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// How often to renew: a third of the time to live.
    pub fn renew_every(&self) -> std::time::Duration {
        (self.ttl / 3)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(1))
    }

    async fn check_newest(&self) -> Result<()> {
        match newest(self.store.as_ref(), &self.record.source, self.ttl).await? {
            Some((g, rec)) if g > self.record.generation => Err(Error::new(
                ErrorKind::Locked,
                format!(
                    "source {}: the lease was taken over by {} (generation {g}, ours {}); \
                     this run stops (was the process paused longer than the lease-ttl?)",
                    self.record.source, rec.holder, self.record.generation
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Extend the lease to `now + ttl`; fails when it was taken over.
    pub async fn renew(&mut self, now: DateTime<Utc>) -> Result<()> {
        self.check_newest().await?;
        self.record.expires_at = now + self.ttl;
        self.store
            .put(
                &layout::lease_key(&self.record.source, self.record.generation),
                encode(&self.record),
                &PutOptions::default(),
            )
            .await
            .map_err(|e| {
                Error::from(e).context(format!("renewing the lease of {}", self.record.source))
            })
    }

    /// Give the lease up: its object is marked expired (never deleted, see the module
    /// documentation).
    pub async fn release(mut self, now: DateTime<Utc>) {
        if self.check_newest().await.is_err() {
            return;
        }
        self.record.expires_at = now;
        let key = layout::lease_key(&self.record.source, self.record.generation);
        if let Err(e) = self
            .store
            .put(&key, encode(&self.record), &PutOptions::default())
            .await
        {
            // It lapses by itself at its expiry.
            warn!(source = %self.record.source, error = %e, "could not release the lease");
        }
    }
}

/// Take the lease of `src` in its first destination; when that repository cannot be
/// reached, in the next one, so an outage of the primary does not stop backups to
/// the others (two hosts that see different outages may then both run: duplicate
/// work, never lost data). A live holder anywhere is [`ErrorKind::Locked`].
pub async fn acquire_for_source(
    ctx: &crate::backup::Context,
    src: &crate::policy::Source,
    holder: &str,
    ttl: Duration,
) -> Result<Lease> {
    let mut last = None;
    for dest in &src.destinations {
        let store = ctx.store(dest)?;
        match Lease::acquire(store, &src.name, holder, ttl, ctx.clock.now()).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == ErrorKind::Locked => return Err(e),
            Err(e) => {
                warn!(source = %src.name, repository = %dest, error = %e, "cannot take the lease here; trying the next destination");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Error::bad_input(format!(
            "source {} has no destination to hold its lease",
            src.name
        ))
    }))
}

/// A lease renewed in the background until [`Held::release`]. When a renewal fails
/// (the lease was taken over), `lost` is set so that the work under it can stop.
#[derive(Debug)]
pub struct Held {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<Lease>>,
}

impl Lease {
    /// Keep the lease renewed every third of its time to live, reading time from
    /// `clock`, until released.
    pub fn hold(
        self,
        clock: Arc<dyn crate::clock::Clock>,
        lost: Arc<std::sync::atomic::AtomicBool>,
    ) -> Held {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let mut lease = self;
        let task = tokio::spawn(async move {
            let every = lease.renew_every();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {
                        if let Err(e) = lease.renew(clock.now()).await {
                            warn!(source = %lease.record().source, error = %e, "lease lost: stopping the work under it");
                            lost.store(true, std::sync::atomic::Ordering::SeqCst);
                            return None;
                        }
                    }
                    _ = &mut stopped => return Some(lease),
                }
            }
        });
        Held { stop, task }
    }
}

impl Held {
    /// Stop renewing and give the lease up (nothing to give up when it was lost).
    pub async fn release(self, now: DateTime<Utc>) {
        let _ = self.stop.send(());
        if let Ok(Some(lease)) = self.task.await {
            lease.release(now).await;
        }
    }
}

fn encode(rec: &LeaseRecord) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(rec).expect("lease records serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::LocalStore;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(LocalStore::new("local".into(), dir.to_path_buf()))
    }

    #[tokio::test]
    async fn a_live_lease_locks_out_others_and_lapses_at_its_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ttl = Duration::seconds(30);
        let mut a = Lease::acquire(s.clone(), "db", "a", ttl, t(0))
            .await
            .unwrap();
        let e = Lease::acquire(s.clone(), "db", "b", ttl, t(10))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        assert!(
            e.to_string()
                .contains("locked by a until 2026-11-30T03:00:30Z"),
            "{e}"
        );
        // Renewed at 20s, it holds until 50s.
        a.renew(t(20)).await.unwrap();
        assert!(
            Lease::acquire(s.clone(), "db", "b", ttl, t(40))
                .await
                .is_err()
        );
        // The holder died: after its expiry, b takes over and a learns it lost.
        let b = Lease::acquire(s.clone(), "db", "b", ttl, t(51))
            .await
            .unwrap();
        assert_eq!(b.record().generation, 2);
        let lost = a.renew(t(52)).await.unwrap_err();
        assert!(lost.to_string().contains("taken over by b"), "{lost}");
    }

    #[tokio::test]
    async fn a_released_lease_is_free_at_once_and_generations_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ttl = Duration::seconds(30);
        for i in 0..5 {
            let l = Lease::acquire(s.clone(), "db", "a", ttl, t(i))
                .await
                .unwrap();
            assert_eq!(l.record().generation, i as u64 + 1);
            l.release(t(i)).await;
        }
        // Old generations are cleaned; the two newest stay.
        let left: Vec<u64> = s
            .list(&layout::lease_prefix("db"))
            .await
            .unwrap()
            .iter()
            .filter_map(|o| layout::parse_lease_key("db", &o.key))
            .collect();
        assert_eq!(left, vec![4, 5]);
    }

    #[tokio::test]
    async fn of_two_takers_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ttl = Duration::seconds(30);
        let (a, b) = tokio::join!(
            Lease::acquire(s.clone(), "db", "a", ttl, t(0)),
            Lease::acquire(s.clone(), "db", "b", ttl, t(0)),
        );
        assert!(a.is_ok() != b.is_ok(), "exactly one must win: {a:?} {b:?}");
    }

    #[tokio::test]
    async fn an_unreadable_lease_object_holds_until_its_ttl_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.put(
            &layout::lease_key("db", 7),
            Bytes::from_static(b"garbage"),
            &PutOptions::create(),
        )
        .await
        .unwrap();
        let modified = s.head(&layout::lease_key("db", 7)).await.unwrap().modified;
        let ttl = Duration::seconds(30);
        let e = Lease::acquire(s.clone(), "db", "a", ttl, modified + Duration::seconds(1))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        let l = Lease::acquire(s.clone(), "db", "a", ttl, modified + Duration::seconds(31))
            .await
            .unwrap();
        assert_eq!(l.record().generation, 8);
    }

    #[tokio::test]
    async fn a_lease_whose_holder_died_on_this_machine_is_taken_over_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let ttl = Duration::minutes(5);
        let held = Lease::acquire(s.clone(), "db", "a", ttl, t(0))
            .await
            .unwrap();
        // The same record, as a process that has exited would have left it.
        let mut dead = held.record().clone();
        dead.process.as_mut().unwrap().pid = 4_294_967;
        s.put(
            &layout::lease_key("db", dead.generation),
            encode(&dead),
            &PutOptions::default(),
        )
        .await
        .unwrap();
        let l = Lease::acquire(s.clone(), "db", "b", ttl, t(1))
            .await
            .unwrap();
        assert_eq!(l.record().generation, 2);
        // A holder that still runs (this process), or of another machine, is waited for.
        let e = Lease::acquire(s.clone(), "db", "c", ttl, t(2))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked);
        let mut elsewhere = l.record().clone();
        elsewhere.process.as_mut().unwrap().host = "another-host".into();
        elsewhere.process.as_mut().unwrap().pid = 4_294_967;
        assert!(!elsewhere.process.as_ref().unwrap().is_known_dead());
    }
}
