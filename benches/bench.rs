//! `cargo bench`: the same orchestrator as `ringmux bench`, on the release binary cargo
//! built for this bench. Arguments after `--` are passed to `ringmux bench`
//! (default: `--quick`), e.g. `cargo bench -- --conns 1,50,500 --repeat 5`.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // cargo passes `--bench` (and filters); keep only what follows a literal `--`-style
    // ringmux option, and default to the quick matrix.
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        args.push("--quick".into());
    }
    let status = Command::new(env!("CARGO_BIN_EXE_ringmux"))
        .arg("bench")
        .args(&args)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("cargo bench: ringmux bench exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cargo bench: cannot run ringmux: {e}");
            ExitCode::FAILURE
        }
    }
}
