//! One place where AWS clients are told what to record: every operation a client sends
//! (`Service:Operation`, e.g. `RDS:CreateDBSnapshot`) is appended to the file named by
//! `LIFEBOAT_AWS_RECORD` when it is set, and to the one named by `LIFEBOAT_AWS_RECORD_ALL`.
//! Tests use the first to prove what one command did and did not call (a dry run sends
//! no mutating call; a resumed restore is called once); the test script sets the second
//! for the whole suite, and the least-privilege IAM policy in `terraform/` is checked
//! against everything it holds.

use aws_sdk_rds::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_rds::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use std::io::Write;

/// The environment variable naming the record file.
pub const RECORD_ENV: &str = "LIFEBOAT_AWS_RECORD";

/// The environment variable naming a second record file, kept across a whole test run:
/// tests set [`RECORD_ENV`] per command, so a suite-wide record needs its own name.
pub const RECORD_ALL_ENV: &str = "LIFEBOAT_AWS_RECORD_ALL";

/// Records the name of every operation a client sends, before it is sent (a call that
/// then fails was still attempted, and IAM must allow it).
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordOperations;

impl Intercept for RecordOperations {
    fn name(&self) -> &'static str {
        "lifeboat-record-operations"
    }

    // Before serialisation, not before execution: a client's interceptors run their
    // `read_before_execution` before the operation's metadata is in the bag. This hook
    // runs once per call, not per retry.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let paths: Vec<_> = [RECORD_ENV, RECORD_ALL_ENV]
            .into_iter()
            .filter_map(std::env::var_os)
            .filter(|p| !p.is_empty())
            .collect();
        if paths.is_empty() {
            return Ok(());
        }
        if let Some(m) = cfg.load::<Metadata>() {
            // One short line per call, appended with O_APPEND: lines of concurrent
            // calls and processes do not interleave.
            let line = format!("{}:{}\n", m.service(), m.name());
            for path in &paths {
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = written {
                    tracing::warn!(file = %std::path::Path::new(path).display(), error = %e, "cannot record an AWS operation");
                }
            }
        }
        Ok(())
    }
}

/// The shared AWS configuration for `region` (the environment's region when `None`):
/// credentials and endpoints from the usual chain (`AWS_ENDPOINT_URL` included, which
/// points the clients at another endpoint, e.g. a test server).
pub async fn shared_config(region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    loader.load().await
}

/// An RDS client for `region` (the environment's when `None`) that records its
/// operations, at `endpoint` when given (a policy's `endpoint`); returns the region it
/// resolved, if any.
pub async fn rds_client(
    region: Option<&str>,
    endpoint: Option<&str>,
) -> (aws_sdk_rds::Client, Option<String>) {
    let shared = shared_config(region).await;
    let region = shared.region().map(|r| r.to_string());
    let mut builder = aws_sdk_rds::config::Builder::from(&shared).interceptor(RecordOperations);
    if let Some(e) = endpoint {
        builder = builder.endpoint_url(e);
    }
    (aws_sdk_rds::Client::from_conf(builder.build()), region)
}

/// A Route53 client (a global service) that records its operations.
pub async fn route53_client() -> aws_sdk_route53::Client {
    // Route53's API lives in us-east-1 whatever the region the zone serves.
    let shared = shared_config(Some("us-east-1")).await;
    let conf = aws_sdk_route53::config::Builder::from(&shared)
        .interceptor(RecordOperations)
        .build();
    aws_sdk_route53::Client::from_conf(conf)
}

/// An error of an AWS call as one line: what was done, the service's code and message.
pub fn error_line<E, R>(
    what: &str,
    e: aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> String
where
    E: aws_sdk_rds::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_rds::error::{DisplayErrorContext, SdkError};
    let detail = match &e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or("no message")
        ),
        other => DisplayErrorContext(other).to_string(),
    };
    format!("{what}: {detail}")
}
