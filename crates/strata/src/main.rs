//! strata: a cloud in one binary. This crate is the command line and nothing else: a
//! node is `strata-node`, its HTTP API `strata-api`.
//!
//! Layout:
//! - `cli`: the commands and their output; `strata up` starts a [`strata_node::Node`].
//! - `control`: the CLI's side of the node's control API (`ps`, `scale`, `logs`, `down`).
//! - `init`: `strata init`, a first strata.json guessed from an app's folder, each guess explained.

mod cli;
mod control;
mod init;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: could not start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
