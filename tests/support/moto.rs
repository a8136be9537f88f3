//! The moto server started by scripts/test.sh (scripts/peers/moto.sh).
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use aws_sdk_s3::Client;

pub fn endpoint() -> String {
    std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").expect(
        "LIFEBOAT_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts moto",
    )
}

/// host:port of moto, for the proxy.
pub fn host_port() -> String {
    endpoint().trim_start_matches("http://").to_string()
}

pub fn bucket_name(tag: &str) -> String {
    format!("lb-{tag}-{:08x}", rand::random::<u32>())
}

/// A plain SDK client straight to moto (not through any proxy), to set up and inspect.
pub async fn client() -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let cfg = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint())
        .force_path_style(true)
        .build();
    Client::from_conf(cfg)
}

pub async fn create_bucket(c: &Client, name: &str) {
    c.create_bucket().bucket(name).send().await.unwrap();
}

pub async fn keys(c: &Client, bucket: &str) -> Vec<String> {
    let out = c.list_objects_v2().bucket(bucket).send().await.unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

pub async fn open_uploads(c: &Client, bucket: &str) -> usize {
    c.list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}
