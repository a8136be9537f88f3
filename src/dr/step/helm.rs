//! `helm` steps: `helm upgrade --install ... --wait`, with the release's revision before
//! the run captured first, so that a rollback returns to exactly that revision (or
//! uninstalls a release the run installed). A drill installs into its own namespace and
//! removes release and namespace at teardown.

use super::Effect;
use crate::dr::plan::cloud::{Helm, HelmDrill};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The namespace a drill installs into: the real one suffixed with a short digest of
/// the run id, within Kubernetes' 63 characters.
pub fn drill_namespace(namespace: &str, run_id: &str) -> String {
    super::drill_suffixed(namespace, run_id, 63)
}

/// `--namespace NS [--kube-context CTX]`.
fn target_flags(h: &Helm, namespace: &str) -> Vec<String> {
    let mut v = vec!["--namespace".to_string(), namespace.to_string()];
    if let Some(c) = &h.kube_context {
        v.extend(["--kube-context".to_string(), c.clone()]);
    }
    v
}

/// The release's newest revision; `None` when it is not installed.
pub async fn current_revision(h: &Helm, namespace: &str) -> Result<Option<u64>> {
    let mut argv = vec![
        h.helm.clone(),
        "history".into(),
        h.release.clone(),
        "--max".into(),
        "1".into(),
        "--output".into(),
        "json".into(),
    ];
    argv.extend(target_flags(h, namespace));
    let shown = argv.join(" ");
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .map_err(|_| Error::failed(format!("`{shown}` did not answer within 60s")))?
        .map_err(|e| Error::io(format!("starting `{shown}`"), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // helm says "Error: release: not found" for a release never installed.
        if stderr.contains("not found") {
            return Ok(None);
        }
        return Err(Error::failed(format!(
            "`{shown}` exited with {}: {} (lifeboat reads the current revision before changing anything, so that a rollback can return to it)",
            out.status,
            stderr.trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::failed(format!("`{shown}` printed no JSON history: {e}")))?;
    Ok(v.as_array()
        .and_then(|a| a.iter().filter_map(|r| r["revision"].as_u64()).max()))
}

/// Resolve a `helm` step: the upgrade command line, the revision to roll back to
/// (captured now, before anything changes) and, in a drill, the teardown commands.
pub async fn resolve(
    h: &Helm,
    root: &Path,
    timeout_secs: u64,
    drill: bool,
    run_id: &str,
    sub: &(dyn Fn(&str) -> Result<String> + Sync),
) -> Result<Effect> {
    if drill && h.drill == HelmDrill::Skip {
        return Ok(Effect {
            kind: "none".into(),
            note: Some(format!(
                "skipped in a drill: helm upgrade --install {} {}",
                h.release, h.chart
            )),
            ..Effect::default()
        });
    }
    let namespace = if drill {
        drill_namespace(&h.namespace, run_id)
    } else {
        h.namespace.clone()
    };
    let timeout = format!("{timeout_secs}s");
    let mut argv = vec![
        h.helm.clone(),
        "upgrade".into(),
        "--install".into(),
        h.release.clone(),
        h.chart.clone(),
    ];
    argv.extend(target_flags(h, &namespace));
    if drill {
        argv.push("--create-namespace".into());
    }
    if let Some(v) = &h.version {
        argv.extend(["--version".into(), v.clone()]);
    }
    for f in &h.values {
        let p = Path::new(f);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        };
        argv.extend(["-f".into(), p.display().to_string()]);
    }
    for (k, v) in &h.set {
        argv.extend(["--set".into(), format!("{k}={}", sub(v)?)]);
    }
    argv.extend(["--wait".into(), "--timeout".into(), timeout.clone()]);

    let (undo, teardown, note) = if drill {
        let mut uninstall = vec![h.helm.clone(), "uninstall".into(), h.release.clone()];
        uninstall.extend(target_flags(h, &namespace));
        let mut delete_ns = vec![
            h.kubectl.clone(),
            "delete".into(),
            "namespace".into(),
            namespace.clone(),
            "--ignore-not-found".into(),
        ];
        if let Some(c) = &h.kube_context {
            delete_ns.extend(["--context".into(), c.clone()]);
        }
        (
            None,
            Some(vec![uninstall, delete_ns]),
            format!("drill namespace {namespace}"),
        )
    } else {
        match current_revision(h, &namespace).await? {
            Some(rev) => {
                let mut rollback = vec![
                    h.helm.clone(),
                    "rollback".into(),
                    h.release.clone(),
                    rev.to_string(),
                ];
                rollback.extend(target_flags(h, &namespace));
                rollback.extend(["--wait".into(), "--timeout".into(), timeout]);
                (
                    Some(rollback),
                    None,
                    format!("revision {rev} before the run"),
                )
            }
            None => {
                let mut uninstall = vec![h.helm.clone(), "uninstall".into(), h.release.clone()];
                uninstall.extend(target_flags(h, &namespace));
                (
                    Some(uninstall),
                    None,
                    "not installed before the run".to_string(),
                )
            }
        }
    };
    Ok(Effect {
        kind: "helm".into(),
        target: Some(format!("{}/{}", namespace, h.release)),
        argv: Some(argv),
        undo,
        teardown,
        note: Some(note),
        ..Effect::default()
    })
}

/// Run the upgrade; outputs the release, namespace and the revision now deployed.
pub async fn run(
    h: &Helm,
    effect: &Effect,
    timeout: Duration,
    capture: &Path,
) -> Result<BTreeMap<String, String>> {
    let argv = effect.argv.as_deref().unwrap_or_default();
    super::command::run(argv, timeout, capture).await?;
    let namespace = effect
        .target
        .as_deref()
        .and_then(|t| t.rsplit_once('/'))
        .map(|(ns, _)| ns.to_string())
        .unwrap_or_else(|| h.namespace.clone());
    // The upgrade succeeded; a history that cannot be read leaves the revision unknown
    // rather than failing a deployed release.
    let revision = match current_revision(h, &namespace).await {
        Ok(Some(r)) => r.to_string(),
        Ok(None) | Err(_) => "unknown".to_string(),
    };
    Ok(BTreeMap::from([
        ("release".to_string(), h.release.clone()),
        ("namespace".to_string(), namespace),
        ("revision".to_string(), revision),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_namespaces_fit_kubernetes() {
        let ns = drill_namespace(&"n".repeat(63), "run");
        assert!(ns.len() <= 63 && ns.contains("-drill-"), "{ns}");
        assert_ne!(drill_namespace("bizra", "a"), drill_namespace("bizra", "b"));
    }
}
