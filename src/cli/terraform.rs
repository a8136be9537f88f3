//! `lifeboat terraform`: inputs for the modules in `terraform/`, from the policy set.

use super::Global;
use super::commands::print_json;
use anyhow::Context as _;
use clap::Subcommand;
use lifeboat::Error;
use lifeboat::policy::PolicySet;
use lifeboat::terraform::{self, TerraformVars};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum TerraformCommand {
    /// Write lifeboat.auto.tfvars.json (buckets, prefixes, object lock, regions, DNS zone)
    Vars {
        /// Folder of the root module to write into, e.g. terraform/environments/bizra
        /// [default: the current folder]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

pub fn run(g: &Global, cmd: TerraformCommand) -> anyhow::Result<i32> {
    match cmd {
        TerraformCommand::Vars { out } => vars(g, out.as_deref().unwrap_or(Path::new("."))),
    }
}

fn vars(g: &Global, out: &Path) -> anyhow::Result<i32> {
    let set = PolicySet::load(&g.policies_path()?)?;
    let plans = terraform::read_plan_texts(&set)?;
    let vars = terraform::vars(&set, &plans).map_err(Error::from)?;
    if !out.is_dir() {
        return Err(Error::bad_input(format!(
            "--out {}: no such folder (name the root module's folder, e.g. terraform/environments/bizra)",
            out.display()
        ))
        .into());
    }
    let path = out.join(terraform::VARS_FILE);
    write_atomically(&path, &vars)?;
    if g.json {
        print_json(&json!({
            "written": path,
            "vars": vars,
            "skipped": vars.skipped,
        }));
    } else {
        println!(
            "wrote {}: {} S3 bucket(s), {} Azure account(s), {} RDS source(s), primary region {}, DR region {}, DNS zone {}",
            path.display(),
            vars.s3_buckets.len(),
            vars.azure_storage.len(),
            vars.rds_sources.len(),
            vars.primary_region,
            vars.dr_region,
            vars.route53.as_ref().map_or_else(
                || "none (no DR plan has a route53_failover step)".to_string(),
                |r| r.zone_id.clone()
            ),
        );
        for s in &vars.skipped {
            println!("  left out {s}");
        }
    }
    Ok(0)
}

/// Terraform must never read a half-written file: write beside it, then rename.
fn write_atomically(path: &Path, vars: &TerraformVars) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(vars).expect("vars serialise");
    text.push('\n');
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
