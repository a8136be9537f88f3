//! Cypher over Neo4j's HTTP transactional endpoint (`POST /db/DB/tx/commit`), with
//! basic auth: the counts, the readiness probe, and the administration commands of a
//! restore. The password travels only in the `Authorization` header.

use super::super::counts::Counts;
use crate::error::{Error, Result};
use crate::policy::Neo4jCounts;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// A failed Cypher request.
#[derive(Debug, thiserror::Error)]
pub(super) enum CypherError {
    /// The server could not be reached, or did not answer in time.
    #[error("neo4j at {url}: {source} (is the server running and the URL right?)")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server refused the credentials.
    #[error(
        "neo4j at {url}: user {user} was refused ({status}); check the source's user and password-env / password-file"
    )]
    Unauthorized {
        url: String,
        user: String,
        status: reqwest::StatusCode,
    },
    /// An HTTP status other than success, or a body that is not the documented JSON.
    #[error("neo4j at {url}: {problem}")]
    Protocol { url: String, problem: String },
    /// Neo4j ran the request and reported an error.
    #[error("neo4j at {url}, database {database}: {code}: {message}")]
    Neo4j {
        url: String,
        database: String,
        code: String,
        message: String,
    },
}

impl CypherError {
    /// The Neo4j status code, when Neo4j reported the error.
    pub(super) fn code(&self) -> Option<&str> {
        match self {
            CypherError::Neo4j { code, .. } => Some(code),
            _ => None,
        }
    }
}

impl From<CypherError> for Error {
    fn from(e: CypherError) -> Self {
        let retryable = matches!(&e, CypherError::Unreachable { .. });
        Error::failed(e.to_string())
            .retryable(retryable)
            .with_source(e)
    }
}

#[derive(Deserialize)]
struct TxResponse {
    #[serde(default)]
    results: Vec<TxResult>,
    #[serde(default)]
    errors: Vec<TxError>,
}

#[derive(Deserialize)]
struct TxResult {
    #[serde(default)]
    data: Vec<TxRow>,
}

#[derive(Deserialize)]
struct TxRow {
    row: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct TxError {
    code: String,
    message: String,
}

/// Quote a label, relationship type or database name for Cypher.
pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The counts of a database as (count name, statement returning it), totals first.
pub(super) fn count_statements(c: &Neo4jCounts) -> Vec<(String, String)> {
    let mut out = vec![
        ("nodes".to_string(), "MATCH (n) RETURN count(n)".to_string()),
        (
            "relationships".to_string(),
            "MATCH ()-[r]->() RETURN count(r)".to_string(),
        ),
    ];
    for l in &c.labels {
        out.push((
            format!("nodes.{l}"),
            format!("MATCH (n:{}) RETURN count(n)", quote(l)),
        ));
    }
    for t in &c.relationship_types {
        out.push((
            format!("relationships.{t}"),
            format!("MATCH ()-[r:{}]->() RETURN count(r)", quote(t)),
        ));
    }
    out
}

/// A Neo4j server's HTTP endpoint with its credentials.
#[derive(Clone)]
pub(super) struct Http {
    client: reqwest::Client,
    url: String,
    user: String,
    password: Option<String>,
    handle: Handle,
    timeout: Duration,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} as {}", self.url, self.user)
    }
}

impl Http {
    /// The endpoint at `url` (no credentials in it), each request limited to `timeout`.
    /// Requests run on `handle`'s runtime, from any thread.
    pub(super) fn new(
        url: &str,
        user: &str,
        password: Option<String>,
        timeout: Duration,
        handle: Handle,
    ) -> Result<Http> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::failed(format!("neo4j at {url}: HTTP client: {e}")))?;
        Ok(Http {
            client,
            url: url.to_string(),
            user: user.to_string(),
            password,
            handle,
            timeout,
        })
    }

    /// The endpoint's URL.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Run `statements` in one transaction of `database`; each result's rows.
    pub(super) fn cypher(
        &self,
        database: &str,
        statements: &[String],
        timeout: Duration,
    ) -> std::result::Result<Vec<Vec<Vec<serde_json::Value>>>, CypherError> {
        let body = serde_json::json!({
            "statements": statements
                .iter()
                .map(|s| serde_json::json!({ "statement": s }))
                .collect::<Vec<_>>(),
        });
        let endpoint = format!("{}/db/{database}/tx/commit", self.url);
        let mut request = self
            .client
            .post(&endpoint)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body.to_string());
        if let Some(p) = &self.password {
            request = request.basic_auth(&self.user, Some(p));
        }
        let url = self.url.clone();
        let unreachable = |source| CypherError::Unreachable {
            url: url.clone(),
            source,
        };
        // A thread of its own, so this works on a runtime worker too (a stream dropped
        // in async code starts the server from its Drop).
        let (status, text) = std::thread::scope(|s| {
            s.spawn(|| {
                self.handle.block_on(async {
                    let response = request.send().await.map_err(unreachable)?;
                    let status = response.status();
                    let text = response.text().await.map_err(unreachable)?;
                    Ok::<_, CypherError>((status, text))
                })
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(CypherError::Unauthorized {
                url,
                user: self.user.clone(),
                status,
            });
        }
        let parsed: std::result::Result<TxResponse, _> = serde_json::from_str(&text);
        let response = match parsed {
            Ok(r) if status.is_success() || !r.errors.is_empty() => r,
            _ => {
                let start: String = text.chars().take(200).collect();
                return Err(CypherError::Protocol {
                    url,
                    problem: format!("POST /db/{database}/tx/commit answered {status}: {start}"),
                });
            }
        };
        if let Some(e) = response.errors.into_iter().next() {
            return Err(CypherError::Neo4j {
                url,
                database: database.to_string(),
                code: e.code,
                message: e.message,
            });
        }
        if response.results.len() != statements.len() {
            return Err(CypherError::Protocol {
                url,
                problem: format!(
                    "{} statements sent, {} results received",
                    statements.len(),
                    response.results.len()
                ),
            });
        }
        Ok(response
            .results
            .into_iter()
            .map(|r| r.data.into_iter().map(|d| d.row).collect())
            .collect())
    }

    /// Count nodes and relationships of `database` (and per label and type as
    /// configured), in one transaction.
    pub(super) fn counts(&self, database: &str, c: &Neo4jCounts) -> Result<Counts> {
        let wanted = count_statements(c);
        let statements: Vec<String> = wanted.iter().map(|(_, s)| s.clone()).collect();
        let results = self.cypher(database, &statements, self.timeout)?;
        let mut counts = Counts::new();
        for ((name, statement), rows) in wanted.into_iter().zip(results) {
            let n = rows
                .first()
                .and_then(|row| row.first())
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    Error::failed(format!(
                        "neo4j at {}, database {database}: `{statement}` returned {rows:?}, not one count",
                        self.url
                    ))
                })?;
            counts.insert(name, n);
        }
        Ok(counts)
    }

    /// Poll `database` until it answers a query, for at most `limit`.
    pub(super) fn wait_ready(&self, database: &str, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let deadline = started + limit;
        let probe = vec!["RETURN 1".to_string()];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last = match self.cypher(
                database,
                &probe,
                left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
            ) {
                Ok(_) => {
                    tracing::info!(url = %self.url, database, waited = ?started.elapsed(), "neo4j answers");
                    return Ok(());
                }
                // Wrong credentials will not fix themselves.
                Err(e @ CypherError::Unauthorized { .. }) => return Err(e.into()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "neo4j database {database} did not answer within {}s after start (raise `start-timeout`, or check the start command); last: {last}",
                    limit.as_secs_f64()
                )));
            }
            std::thread::sleep(
                Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_types_are_quoted_with_backticks_escaped() {
        let c = Neo4jCounts {
            labels: vec!["Person".into(), "we`ird label".into()],
            relationship_types: vec!["KNOWS".into()],
        };
        let s = count_statements(&c);
        assert_eq!(
            s,
            vec![
                ("nodes".into(), "MATCH (n) RETURN count(n)".into()),
                (
                    "relationships".into(),
                    "MATCH ()-[r]->() RETURN count(r)".into()
                ),
                (
                    "nodes.Person".into(),
                    "MATCH (n:`Person`) RETURN count(n)".into()
                ),
                (
                    "nodes.we`ird label".into(),
                    "MATCH (n:`we``ird label`) RETURN count(n)".into()
                ),
                (
                    "relationships.KNOWS".into(),
                    "MATCH ()-[r:`KNOWS`]->() RETURN count(r)".into()
                ),
            ]
        );
    }
}
