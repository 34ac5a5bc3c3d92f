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
pub mod error;
pub mod load;
pub mod os;
pub mod probe;
pub mod proto;
pub mod report;
pub mod results;
pub mod server;
pub mod sysinfo;

/// The server's counted syscall macro, crate-private (`use crate::syscall;`).
pub(crate) use server::sys::syscall;

use std::process::ExitCode;

use cli::{Cli, Command};

pub use error::{ExitError, exit_code_of};

/// Checks that need more than clap (value combinations, CPUs this process may use),
/// done before anything runs so that every subcommand answers bad usage the same way:
/// one line and exit 2.
fn check_usage(cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve(a) => {
            server::ServerConfig::from_args(a)?;
        }
        Command::Load(a) => {
            load::LoadConfig::from_args(a)?;
            if let Some(list) = &a.pin {
                let allowed = server::sys::allowed_cpus()?;
                if let Some(c) = os::cpus::parse_cpu_list(list)?
                    .into_iter()
                    .find(|c| !allowed.contains(c))
                {
                    anyhow::bail!(
                        "--cpus: CPU {c} is not available to this process (it may run on {})",
                        os::cpus::format_cpu_list(&allowed)
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Run one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    check_usage(&cli.command).map_err(|e| ExitError {
        code: 2,
        msg: format!("{e:#}"),
    })?;
    match cli.command {
        Command::Serve(a) => server::serve_cmd(a),
        Command::Probe(a) => probe::probe_cmd(a),
        Command::Load(a) => load::load_cmd(a),
        Command::Bench(a) => bench::bench_cmd(a),
        Command::Report(a) => report::report_cmd(&a.dir),
        Command::Compare(a) => report::compare::run(&a.base, &a.head, &a.max_regression, a.strict),
        Command::Merge(a) => report::merge::merge_cmd(&a.inputs, &a.output, a.allow_partial),
        Command::Client(a) => client::client_cmd(a),
    }
}
