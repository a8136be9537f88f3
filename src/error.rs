//! The crate error: every failure carries a kind (which fixes the process exit code)
//! and whether retrying the same operation could succeed.
//!
//! Modules keep their own small error enums where that helps; they convert into
//! [`Error`] at the module boundary and add the object they were working on
//! (file and field, repository and key, backup id) so the message names it.

use std::fmt;

/// What kind of failure this is; it fixes the exit code (see README "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad usage, bad policy or bad manifest supplied by the user: exit 2.
    BadInput,
    /// The run failed (I/O, engine, storage): exit 1.
    RunFailed,
    /// Some destinations committed, others failed: exit 3.
    Partial,
    /// A hash or count did not match: exit 4.
    Integrity,
    /// An RPO/RTO target was breached: exit 5.
    Breach,
    /// Another run holds the lock: exit 6.
    Locked,
}

impl ErrorKind {
    /// The documented process exit code of this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::RunFailed => 1,
            ErrorKind::BadInput => 2,
            ErrorKind::Partial => 3,
            ErrorKind::Integrity => 4,
            ErrorKind::Breach => 5,
            ErrorKind::Locked => 6,
        }
    }
}

/// The crate-wide error.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    retryable: bool,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message that names the object and, where possible, the fix.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            retryable: false,
            message: message.into(),
            source: None,
        }
    }

    /// Bad user input (exit 2).
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }

    /// A failed run (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RunFailed, message)
    }

    /// An integrity failure: hash or count mismatch (exit 4).
    pub fn integrity(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, message)
    }

    /// An I/O failure on `what` (a path or object), keeping the source error.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let retryable = matches!(
            err.kind(),
            std::io::ErrorKind::Interrupted
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
        );
        Error {
            kind: ErrorKind::RunFailed,
            retryable,
            message: format!("{what}: {err}"),
            source: Some(Box::new(err)),
        }
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Mark whether the same operation may succeed when retried.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Prefix the message with context (the object being worked on).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying could succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        let busy = matches!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        Error::failed(format!("sqlite: {err}"))
            .retryable(busy)
            .with_source(err)
    }
}

/// Extension to add context to any result whose error converts into [`Error`].
pub trait ResultExt<T> {
    /// Prefix the error message with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
}
