//! The `lifeboat` binary: parse the command line, run, map errors to exit codes.

mod cli;

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let level = match (cli.global.quiet, cli.global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn,lifeboat=info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LIFEBOAT_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeboat: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // A blocking read abandoned by a cancelled backup (a stalled source) must not keep
    // the process alive once the command has finished.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            let code = cli::exit_code(&e);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": format!("{e:#}"), "exit-code": code})
                );
            }
            eprintln!("lifeboat: error: {e:#}");
            ExitCode::from(code as u8)
        }
    }
}
