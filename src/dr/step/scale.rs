//! `kubernetes_scale` steps: `kubectl scale deployment/NAME --replicas=N`. Before
//! anything changes the step reads the replica count the deployment has
//! (`kubectl get deployment NAME -o jsonpath={.spec.replicas}`) and checkpoints it with
//! the effect, like helm's revision: the undo scales back to exactly that count, and a
//! later step restores it through `${steps.ID.outputs.replicas-before}`. A resumed step
//! keeps the count its first attempt found, never one read after it had scaled. A drill
//! never scales: it cannot isolate a production deployment.

use super::Effect;
use crate::dr::plan::cloud::Scale;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A `kubernetes_scale` step, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ScaleEffect {
    /// `NAMESPACE/DEPLOYMENT`.
    pub deployment: String,
    /// The replica count found before the step changed anything.
    pub replicas_before: u32,
    /// The replica count the step scales to.
    pub replicas: u32,
}

/// `--namespace NS [--context CTX]`.
fn target_flags(s: &Scale) -> Vec<String> {
    let mut v = vec!["--namespace".to_string(), s.namespace.clone()];
    if let Some(c) = &s.kube_context {
        v.extend(["--context".to_string(), c.clone()]);
    }
    v
}

/// `kubectl scale deployment/NAME --namespace NS [--context C] --replicas=N`.
fn scale_argv(s: &Scale, replicas: u32) -> Vec<String> {
    let mut argv = vec![
        s.kubectl.clone(),
        "scale".into(),
        format!("deployment/{}", s.deployment),
    ];
    argv.extend(target_flags(s));
    argv.push(format!("--replicas={replicas}"));
    argv
}

/// The deployment's replica count now (`spec.replicas`).
pub async fn current_replicas(s: &Scale) -> Result<u32> {
    let mut argv = vec![
        s.kubectl.clone(),
        "get".into(),
        "deployment".into(),
        s.deployment.clone(),
    ];
    argv.extend(target_flags(s));
    argv.extend(["-o".into(), "jsonpath={.spec.replicas}".into()]);
    let shown = argv.join(" ");
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .map_err(|_| Error::failed(format!("`{shown}` did not answer within 60s")).retryable(true))?
        .map_err(|e| Error::io(format!("starting `{shown}`"), e))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "`{shown}` exited with {}: {} (lifeboat reads the replica count before scaling, so that the undo and the scale-up restore it; check deployment and namespace)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .retryable(true));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse::<u32>().map_err(|_| {
        Error::failed(format!(
            "`{shown}` printed `{}`, not a replica count",
            text.trim()
        ))
    })
}

/// Resolve a `kubernetes_scale` step: the count to scale to (references substituted),
/// the count found now (the undo's), and both command lines.
pub async fn resolve(
    s: &Scale,
    step_id: &str,
    drill: bool,
    sub: &(dyn Fn(&str) -> Result<String> + Sync),
) -> Result<Effect> {
    if drill {
        return Ok(Effect {
            kind: "none".into(),
            note: Some(format!(
                "skipped in a drill: kubectl scale deployment/{} --namespace {} (a drill never scales a production deployment)",
                s.deployment, s.namespace
            )),
            ..Effect::default()
        });
    }
    let wanted = sub(&s.replicas)?;
    let before = current_replicas(s).await?;
    if wanted.contains("${") {
        // A dry run: the count a step before will find is not known yet.
        let mut argv = scale_argv(s, 0);
        argv.pop();
        argv.push(format!("--replicas={wanted}"));
        return Ok(Effect {
            kind: "command".into(),
            target: Some(format!("{}/{}", s.namespace, s.deployment)),
            argv: Some(argv),
            undo: Some(scale_argv(s, before)),
            note: Some(format!("{before} replicas now")),
            ..Effect::default()
        });
    }
    let replicas: u32 = wanted.trim().parse().map_err(|_| {
        Error::failed(format!(
            "step {step_id}: replicas `{}` resolved to `{wanted}`, not a replica count",
            s.replicas
        ))
    })?;
    Ok(Effect {
        kind: "command".into(),
        target: Some(format!("{}/{}", s.namespace, s.deployment)),
        argv: Some(scale_argv(s, replicas)),
        undo: Some(scale_argv(s, before)),
        note: Some(format!("{before} replicas before the step")),
        scale: Some(ScaleEffect {
            deployment: format!("{}/{}", s.namespace, s.deployment),
            replicas_before: before,
            replicas,
        }),
        ..Effect::default()
    })
}

/// Scale; outputs the deployment, the count found before and the count now.
pub async fn run(
    effect: &Effect,
    timeout: Duration,
    capture: &Path,
) -> Result<BTreeMap<String, String>> {
    let Some(scale) = &effect.scale else {
        return Err(Error::failed(
            "kubernetes_scale step without a resolved replica count",
        ));
    };
    super::command::run(effect.argv.as_deref().unwrap_or_default(), timeout, capture).await?;
    Ok(BTreeMap::from([
        ("deployment".to_string(), scale.deployment.clone()),
        (
            "replicas-before".to_string(),
            scale.replicas_before.to_string(),
        ),
        ("replicas".to_string(), scale.replicas.to_string()),
    ]))
}
