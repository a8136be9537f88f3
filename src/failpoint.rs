//! Named crash points for crash-safety tests.
//!
//! When the environment variable `LIFEBOAT_FAILPOINT` names a point (a comma-separated
//! list is allowed), the process aborts there at once, as a `kill -9` or a power cut
//! would stop it: no destructor, no cleanup, no flush. Production never sets it.

/// Abort the process if `name` is armed in `LIFEBOAT_FAILPOINT`.
pub fn hit(name: &str) {
    if let Ok(armed) = std::env::var("LIFEBOAT_FAILPOINT")
        && armed.split(',').any(|p| p.trim() == name)
    {
        eprintln!("lifeboat: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
