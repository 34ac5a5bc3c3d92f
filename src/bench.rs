//! Orchestrator: spawn servers, pin CPUs, run the matrix interleaved, write reports.

use std::process::ExitCode;

use crate::cli::BenchArgs;

pub fn bench_cmd(_a: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bench` is not built yet: it arrives with the measurement work (issue 4)")
}
