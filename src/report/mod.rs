//! Pure steps over result files: formats, report rendering, compare, merge.
//! Imports no backend and opens no socket.

pub mod fmt;
pub mod hgrm;
pub mod hlog;
pub mod model;

use std::process::ExitCode;

use crate::cli::{CompareArgs, MergeArgs, ReportArgs};

pub fn report_cmd(_a: ReportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`report` is not built yet (issue 4)")
}

pub fn compare_cmd(_a: CompareArgs) -> anyhow::Result<ExitCode> {
    Err(crate::ExitError { code: 2, msg: "`compare` is not built yet (issue 4)".into() }.into())
}

pub fn merge_cmd(_a: MergeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`merge` is not built yet (issue 4)")
}
