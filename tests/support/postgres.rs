//! The PostgreSQL cluster started by scripts/test.sh (scripts/peers/postgres.sh).
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use tokio_postgres::{Client, NoTls};

/// `postgres://lifeboat@127.0.0.1:PORT/postgres`, without the password.
pub fn admin_url() -> String {
    std::env::var("LIFEBOAT_TEST_PG_URL").expect(
        "LIFEBOAT_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL",
    )
}

/// The CA that signed the test server's certificate.
pub fn ca() -> String {
    std::env::var("LIFEBOAT_TEST_PG_CA").expect("scripts/test.sh sets LIFEBOAT_TEST_PG_CA")
}

pub fn password() -> String {
    std::env::var("LIFEBOAT_TEST_PG_PASSWORD")
        .expect("scripts/test.sh sets LIFEBOAT_TEST_PG_PASSWORD")
}

/// The URL of database `db` on the test cluster.
pub fn url(db: &str) -> String {
    let admin = admin_url();
    format!("{}/{db}", admin.rsplit_once('/').unwrap().0)
}

pub fn db_name(tag: &str) -> String {
    format!("lb_{tag}_{:08x}", rand::random::<u32>())
}

pub async fn connect(db: &str) -> Client {
    let mut cfg: tokio_postgres::Config = url(db).parse().unwrap();
    cfg.password(password());
    let (client, conn) = cfg.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A new database with tables users, tasks (with created_at) and poi_records.
pub async fn create_db(db: &str, users: i64, tasks: i64) {
    connect("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let c = connect(db).await;
    c.batch_execute(&format!(
        "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE tasks (id bigserial PRIMARY KEY, user_id bigint NOT NULL,
                             title text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE SCHEMA audit;
         CREATE TABLE audit.poi_records (id bigserial PRIMARY KEY, lat float8, lon float8);
         INSERT INTO users (name) SELECT 'user ' || i FROM generate_series(1, {users}) i;
         INSERT INTO tasks (user_id, title, created_at)
           SELECT 1 + i % {users}, repeat('t', 80), timestamptz '2026-11-01 00:00:00Z' + i * interval '1 second'
           FROM generate_series(1, {tasks}) i;
         INSERT INTO audit.poi_records (lat, lon) SELECT i, i FROM generate_series(1, 7) i;"
    ))
    .await
    .unwrap();
}

pub async fn count(db: &str, table: &str) -> i64 {
    connect(db)
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}
