//! Thin entry: parse the command line, run, map errors to one line and an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = ringmux::cli::Cli::parse();
    match ringmux::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes, joined.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                msg.push_str(": ");
                msg.push_str(&cause.to_string());
            }
            eprintln!("ringmux: error: {msg}");
            ExitCode::from(ringmux::exit_code_of(&e))
        }
    }
}

/// `ringmux probe | head -1`: Rust ignores SIGPIPE, so `println!` to a closed pipe
/// panics ("failed printing to stdout: Broken pipe"). End quietly instead, with the
/// status a process killed by SIGPIPE reports to the shell (141). SIGPIPE itself stays
/// ignored: the servers and the load generator write to sockets a peer may reset.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
