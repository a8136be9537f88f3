//! The behaviour every [`Store`] promises, as one suite that each backend's tests call
//! (local here; S3 against moto and Azure against Azurite in their own tests).

use super::{CleanupOptions, Part, PutOptions, Store, layout};
use bytes::Bytes;
use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};

fn create() -> PutOptions {
    PutOptions::create()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn part(index: usize, offset: u64, data: Bytes) -> Part {
    Part::new(index, offset, data)
}

/// Run the whole suite against `store`; panics with the failed promise.
pub async fn run(store: &dyn Store) {
    let prefix = format!("conformance-{:08x}/", rand::random::<u32>());
    let k = |name: &str| format!("{prefix}{name}");

    // Missing objects are reported as such.
    let missing = store.get(&k("nope")).await.unwrap_err();
    assert!(missing.is_not_found(), "get of a missing key: {missing}");
    let missing = store.head(&k("nope")).await.unwrap_err();
    assert!(missing.is_not_found(), "head of a missing key: {missing}");
    store
        .delete(&k("nope"))
        .await
        .expect("delete of a missing key succeeds");

    // Put, get, head, overwrite.
    store
        .put(
            &k("a/one"),
            Bytes::from_static(b"hello"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(&store.get(&k("a/one")).await.unwrap()[..], b"hello");
    assert_eq!(store.head(&k("a/one")).await.unwrap().size, 5);
    store
        .put(
            &k("a/one"),
            Bytes::from_static(b"world!"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(&store.get(&k("a/one")).await.unwrap()[..], b"world!");

    // Conditional put: create only if absent.
    let exists = store
        .put(&k("a/one"), Bytes::from_static(b"x"), &create())
        .await
        .unwrap_err();
    assert!(
        matches!(exists, super::StorageError::AlreadyExists { .. }),
        "create over an existing key: {exists}"
    );
    assert_eq!(&store.get(&k("a/one")).await.unwrap()[..], b"world!");
    store
        .put(&k("a/two"), Bytes::from_static(b"2"), &create())
        .await
        .unwrap();

    // Ranged reads; a range past the end is an error, not a short read.
    assert_eq!(
        &store.get_range(&k("a/one"), 1..4).await.unwrap()[..],
        b"orl"
    );
    assert!(store.get_range(&k("a/one"), 3..10).await.is_err());

    // Multipart: invisible until complete, then whole; parts may arrive out of order
    // and twice (a retry).
    let up = store.put_multipart(&k("b/big"), &create()).await.unwrap();
    // S3 refuses parts under 5 MiB but the last.
    let big = Bytes::from(vec![7u8; 5 << 20]);
    let tail = Bytes::from_static(b"tail");
    let first = part(0, 0, big.clone());
    let last = part(1, big.len() as u64, tail.clone());
    up.put_part(last.clone()).await.unwrap();
    up.put_part(first.clone()).await.unwrap();
    up.put_part(last).await.unwrap();
    assert!(
        store.head(&k("b/big")).await.unwrap_err().is_not_found(),
        "an incomplete multipart upload is visible"
    );
    up.complete(2).await.unwrap();
    let got = store.get(&k("b/big")).await.unwrap();
    assert_eq!(got.len(), (5 << 20) + 4);
    assert_eq!(&got[5 << 20..], b"tail");

    // Abort leaves nothing.
    let up = store
        .put_multipart(&k("b/aborted"), &create())
        .await
        .unwrap();
    up.put_part(first.clone()).await.unwrap();
    up.abort().await.unwrap();
    assert!(
        store
            .head(&k("b/aborted"))
            .await
            .unwrap_err()
            .is_not_found()
    );

    // A part whose bytes do not match its checksum is refused; the upload can only be
    // aborted, and nothing becomes visible.
    let up = store
        .put_multipart(&k("b/corrupt"), &create())
        .await
        .unwrap();
    let mut bad = first;
    bad.sha256 = sha(b"something else");
    assert!(
        up.put_part(bad).await.is_err(),
        "a part with a wrong checksum was accepted"
    );
    up.abort().await.unwrap();
    assert!(
        store
            .head(&k("b/corrupt"))
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Cleaning up unfinished uploads removes only stale uploads of backups under the
    // source's folder that started before the bound (a live lease's): another source's
    // upload, a running one and a key lifeboat would not build are left alone, and can
    // still be completed. A backend whose unfinished uploads cannot be listed (Azure)
    // removes none.
    let now = Utc::now();
    let old_id = layout::new_backup_id(now - Duration::days(3));
    let new_id = layout::new_backup_id(now);
    let stale_key = k(&layout::data_key("c/app", &old_id));
    let stale = store.put_multipart(&stale_key, &create()).await.unwrap();
    stale
        .put_part(part(0, 0, Bytes::from_static(b"stale")))
        .await
        .unwrap();
    let mut kept = Vec::new();
    for key in [
        k(&layout::data_key("c/other", &old_id)),
        k(&layout::data_key("c/app", &new_id)),
        k("c/app/loose"),
    ] {
        let up = store.put_multipart(&key, &create()).await.unwrap();
        up.put_part(part(0, 0, Bytes::from_static(b"kept")))
            .await
            .unwrap();
        kept.push((key, up));
    }
    let removed = store
        .cleanup_incomplete(&CleanupOptions {
            prefix: k("c/app/"),
            before: now + Duration::minutes(1),
            started_before: Some(now - Duration::hours(1)),
        })
        .await
        .unwrap();
    assert!(
        removed <= 1,
        "cleanup removed {removed} uploads, 1 was stale"
    );
    for (key, up) in kept {
        up.complete(1)
            .await
            .unwrap_or_else(|e| panic!("{key}: an upload cleanup must keep was cut: {e}"));
        assert_eq!(&store.get(&key).await.unwrap()[..], b"kept");
        store.delete(&key).await.unwrap();
    }
    if removed == 1 {
        assert!(
            stale.complete(1).await.is_err(),
            "a removed upload could still complete"
        );
    } else {
        stale.abort().await.unwrap();
    }
    assert!(store.head(&stale_key).await.unwrap_err().is_not_found());

    // Listing: committed objects under the prefix only, sorted.
    let keys: Vec<String> = store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![k("a/one"), k("a/two"), k("b/big")]);
    let keys: Vec<String> = store
        .list(&k("a/"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![k("a/one"), k("a/two")]);

    // Delete.
    for key in keys {
        store.delete(&key).await.unwrap();
    }
    store.delete(&k("b/big")).await.unwrap();
    assert!(store.list(&prefix).await.unwrap().is_empty());
}
