//! Secrets never leave the environment: not in output at any verbosity, not in the
//! repository (manifests, verification results), not in the catalog.

use crate::common::*;
use crate::proxy::{Mode, Proxy};
use crate::{azurite, moto};

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_secret_key_and_the_azure_key_appear_nowhere() {
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .expect("scripts/test.sh exports a distinctive AWS_SECRET_ACCESS_KEY");
    assert!(secret.len() >= 16, "use a distinctive secret");
    let s3 = moto::client().await;
    let bucket = moto::bucket_name("sec");
    moto::create_bucket(&s3, &bucket).await;
    let proxy = Proxy::start(&moto::host_port());
    let container = azurite::container_name("sec");
    azurite::create_container(&container).await;
    let local_dir = tempfile::tempdir().unwrap();
    let env = env(&[
        ("azure", azurite::repo(&azurite::base(), &container)),
        ("s3", s3_repo(&proxy.url(), &bucket)),
        ("local", local_repo(local_dir.path())),
    ]);
    env.write_input(2 << 20);

    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env.cmd().args(args).output().unwrap();
        outputs.push(format!("{}{}", stdout(&out), stderr(&out)));
    };
    // Success and failure paths, at every verbosity, with errors from the store.
    run(&["-vv", "backup", "stream"]);
    proxy.set(Mode::Status503(2));
    run(&["-vv", "--json", "backup", "stream"]);
    proxy.set(Mode::CutAfter(100_000));
    run(&["-v", "backup", "stream"]);
    proxy.set(Mode::Pass);
    run(&["-vv", "verify", "--all"]);
    run(&["-vv", "--json", "list"]);
    let target = env.dir.path().join("restored");
    run(&["-vv", "restore", "stream", "--to", target.to_str().unwrap()]);

    assert!(
        outputs.iter().any(|o| o.contains("DEBUG")),
        "verbose output expected"
    );
    let secrets = [secret.as_str(), azurite::ACCOUNT_KEY];
    for o in &outputs {
        for s in secrets {
            assert!(!o.contains(s), "a secret leaked into output:\n{o}");
        }
    }
    let mut files = crate::util::files_under(local_dir.path());
    files.extend(crate::util::files_under(&env.policies.join(".lifeboat")));
    assert!(files.len() > 3, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a secret is in {}",
                f.display()
            );
        }
    }
    for key in moto::keys(&s3, &bucket).await {
        let obj = s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = obj.body.collect().await.unwrap().into_bytes();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret key is in s3://{bucket}/{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_azure_sas_signature_appears_nowhere() {
    let sas = azurite::account_sas();
    let sig = url::form_urlencoded::parse(sas.as_bytes())
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let encoded: String = url::form_urlencoded::byte_serialize(sig.as_bytes()).collect();
    let container = azurite::container_name("sas");
    azurite::create_container(&container).await;
    let proxy = Proxy::start(&azurite::host_port());
    let env = env(&[("azure", azurite::repo(&proxy.url(), &container))]);
    env.write_input(1 << 20);
    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let out = env
            .cmd()
            .env_remove("AZURE_STORAGE_KEY")
            .env("AZURE_STORAGE_SAS_TOKEN", &sas)
            .args(args)
            .output()
            .unwrap();
        outputs.push((
            out.status.code(),
            format!("{}{}", stdout(&out), stderr(&out)),
        ));
    };
    run(&["-vv", "backup", "stream"]);
    proxy.set(Mode::Status503(2));
    run(&["-vv", "--json", "backup", "stream"]);
    proxy.set(Mode::CutAfter(100_000));
    run(&["-vv", "backup", "stream"]);
    proxy.set(Mode::Pass);
    run(&["-vv", "verify", "--all"]);
    run(&["-vv", "doctor"]);
    assert_eq!(outputs[0].0, Some(0), "{}", outputs[0].1);
    assert_eq!(outputs[2].0, Some(1), "{}", outputs[2].1);
    for (_, o) in &outputs {
        for s in [&sig, &encoded] {
            assert!(!o.contains(s.as_str()), "the SAS signature leaked:\n{o}");
        }
    }
    let files = crate::util::files_under(&env.policies.join(".lifeboat"));
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(encoded.len())
                .any(|w| w == encoded.as_bytes()),
            "{}",
            f.display()
        );
    }
}
