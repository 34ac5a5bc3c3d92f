//! Thin entry: parse the command line, run, map errors to one line and an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
