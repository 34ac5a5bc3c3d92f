//! ringmux: a Linux TCP server with the classic IO models side by side (blocking,
//! thread per connection, busy polling, select, poll, epoll, signal-driven IO and an
//! io_uring proactor), and the measurement kit to compare them.
//!
//! Layout: [`proto`] holds sans-IO protocol cores, [`server`] the backends, [`load`]
//! the load generator (it knows nothing of the server), [`os`] OS helpers both use,
//! [`report`] pure steps over
//! result files, and [`bench`] the one place that ties servers, load and reports.

pub mod bench;
pub mod cli;
pub mod client;
pub mod load;
pub mod os;
pub mod probe;
pub mod proto;
pub mod report;
pub mod server;
pub mod sysinfo;

use std::process::ExitCode;

use cli::{Cli, Command};

/// An error that carries its own exit code (e.g. `compare`'s 2 for bad input).
#[derive(Debug)]
pub struct ExitError {
    pub code: u8,
    pub msg: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ExitError {}

/// Exit code for an error returned by [`run`]: the code of an [`ExitError`] in its
/// chain, else 1.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.chain().find_map(|c| c.downcast_ref::<ExitError>()).map_or(1, |x| x.code)
}

/// Run one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => server::serve_cmd(a),
        Command::Probe(a) => probe::probe_cmd(a),
        Command::Load(a) => load::load_cmd(a),
        Command::Bench(a) => bench::bench_cmd(a),
        Command::Report(a) => report::report_cmd(a),
        Command::Compare(a) => report::compare_cmd(a),
        Command::Merge(a) => report::merge_cmd(a),
        Command::Client(a) => client::client_cmd(a),
    }
}
