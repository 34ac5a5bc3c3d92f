//! `ringmux probe`: kernel, io_uring availability and each feature, with reasons.

use std::process::ExitCode;

use crate::cli::ProbeArgs;

pub fn probe_cmd(_a: ProbeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`probe` is being built")
}
