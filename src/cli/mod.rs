//! Command-line types for every subcommand (clap derive). Parsing only: each
//! subcommand's `Args` is turned into a validated config by the module that runs it.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

mod bench;
mod completions;
mod load;
mod report;
mod serve;

pub use bench::*;
pub use completions::*;
pub use load::*;
pub use report::*;
pub use serve::*;

/// ringmux: the Linux IO models side by side (an io_uring proactor, an epoll reactor,
/// poll, select, signal-driven IO, blocking, threads, busy polling), with the load
/// generator and reports to compare them.
#[derive(Debug, Parser)]
#[command(name = "ringmux", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each variant's doc comment is its one-line help.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a TCP server (echo, upper, http, chat) on any IO model (--backend).
    #[command(allow_negative_numbers = true)]
    Serve(ServeArgs),
    /// Drive a TCP server (echo, upper or http) and record latency in HdrHistograms.
    #[command(allow_negative_numbers = true)]
    Load(LoadArgs),
    /// Run the benchmark matrix (backends x connections x modes) and write a report.
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Re-render report.md and report.html from a bench output folder.
    #[command(allow_negative_numbers = true)]
    Report(ReportArgs),
    /// Compare two results files; exit 0 within limits, 1 on a regression, 2 on bad input.
    #[command(allow_negative_numbers = true)]
    Compare(CompareArgs),
    /// Merge interval logs (.hlog) from several load processes, or a folder of load
    /// agents' results, into one.
    #[command(allow_negative_numbers = true)]
    Merge(MergeArgs),
    /// Show the kernel, whether io_uring can be set up here, and each feature ringmux may use.
    Probe(ProbeArgs),
    /// Connect, send each stdin line, print what the server sends as it arrives.
    #[command(allow_negative_numbers = true)]
    Client(ClientArgs),
    /// Write shell completions for bash, zsh or fish to stdout.
    Completions(CompletionsArgs),
    /// Write the man page (roff) to stdout: `ringmux man | man -l -`.
    Man(ManArgs),
}

/// `ringmux client`: where to connect.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address, IP:PORT.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "IP:PORT", value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Seconds to wait for the connection.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub connect_timeout: f64,
}

/// `ringmux probe`: how to print.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// An IP:PORT socket address. A host name gets a hint instead of clap's "invalid
/// socket address syntax": ringmux resolves no names.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let hint = match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            if host.eq_ignore_ascii_case("localhost") {
                format!("use 127.0.0.1:{port} (or [::1]:{port} for IPv6)")
            } else if host.contains(':') {
                format!("an IPv6 address goes in brackets: [{host}]:{port}")
            } else {
                format!("'{host}' is not an IP address; ringmux resolves no host names")
            }
        }
        _ => "expected IP:PORT, e.g. 127.0.0.1:7878 or [::1]:7878".to_string(),
    };
    Err(format!("'{s}' is not IP:PORT: {hint}"))
}

/// Seconds as a non-negative finite number ("5", "0.5").
pub fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(format!("'{s}' is out of range (0 to one year)"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses_say_ip_port() {
        assert_eq!(parse_addr("127.0.0.1:7878").unwrap().port(), 7878);
        assert!(parse_addr("[::1]:80").is_ok());
        let e = parse_addr("localhost:7878").unwrap_err();
        assert!(
            e.contains("is not IP:PORT") && e.contains("use 127.0.0.1:7878"),
            "{e}"
        );
        assert!(parse_addr("::1:80").unwrap_err().contains("[::1]:80"));
        assert!(
            parse_addr("example.com:80")
                .unwrap_err()
                .contains("resolves no host names")
        );
        assert!(parse_addr("7878").unwrap_err().contains("expected IP:PORT"));
    }

    #[test]
    fn secs() {
        assert_eq!(parse_secs("5").unwrap(), 5.0);
        assert_eq!(parse_secs("0.5s").unwrap(), 0.5);
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("nan").is_err());
        assert!(parse_secs("x").is_err());
    }
}
