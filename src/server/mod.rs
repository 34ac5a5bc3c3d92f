//! The server: backend selection, config, stats, lifecycle.

use std::process::ExitCode;

use crate::cli::ServeArgs;

pub fn serve_cmd(_a: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`serve` is being built")
}
