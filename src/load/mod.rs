//! Load generator: closed and open loop, HdrHistogram latency. Never imports `server`.

use std::process::ExitCode;

use crate::cli::LoadArgs;

pub fn load_cmd(_a: LoadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`load` is not built yet (issue 4)")
}
