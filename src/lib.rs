//! ringmux: a Linux TCP server with the classic IO models side by side (blocking,
//! thread per connection, busy polling, select, poll, epoll, signal-driven IO and an
//! io_uring proactor), and the measurement kit to compare them.
//!
//! Layout: [`proto`] holds sans-IO protocol cores, [`server`] the backends, [`load`]
//! the load generator (it knows nothing of the server), [`os`] OS helpers both use,
//! [`report`] pure steps over
//! result files, and [`bench`](mod@bench) the one place that ties servers, load and reports.

// Every public item says what it is for (the crate is a library too); CI builds the
// docs with -D warnings, so an undocumented item fails there.
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod error;
pub mod load;
pub mod os;
pub mod probe;
pub mod proto;
pub mod report;
pub mod results;
pub mod server;
pub mod sysinfo;

use std::process::ExitCode;

use cli::{Cli, Command};

pub use error::{ExitError, exit_code_of};

/// Bad usage, found after clap (value combinations, CPUs this process may use): one
/// line and exit 2, the same in every subcommand.
fn usage<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| {
        ExitError {
            code: 2,
            msg: format!("{e:#}"),
        }
        .into()
    })
}

/// The end of a command that writes to stdout: `ringmux man | head` ends quietly with
/// the status of a process killed by SIGPIPE (141), as `main` does for `println!`.
fn written(r: std::io::Result<()>) -> anyhow::Result<ExitCode> {
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::from(141)),
        Err(e) => Err(e.into()),
    }
}

/// Run one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => {
            server::serve(usage(a.config())?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(a) => probe::probe_cmd(a.json),
        Command::Load(a) => load::load_cmd(usage(a.command())?),
        Command::Bench(a) => bench::bench_cmd(a.into()),
        Command::Report(a) => report::report_cmd(&a.dir),
        Command::Compare(a) => match &a.head {
            Some(head) => report::compare::run(&a.base, head, &a.max_regression, a.strict),
            None => report::compare::run_pairs(&a.base, &a.pair, &a.max_regression, a.strict),
        },
        Command::Merge(a) => report::merge::merge_cmd(&a.inputs, &a.output, a.allow_partial),
        Command::Client(a) => client::client_cmd(
            a.addr,
            std::time::Duration::from_secs_f64(a.connect_timeout),
        ),
        Command::Completions(a) => written(cli::write_completions(
            a.shell,
            &mut std::io::stdout().lock(),
        )),
        Command::Man(a) => {
            match cli::write_man(a.subcommand.as_deref(), &mut std::io::stdout().lock()) {
                // An unknown subcommand is bad usage (exit 2).
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => usage(Err(e.into())),
                r => written(r),
            }
        }
    }
}
