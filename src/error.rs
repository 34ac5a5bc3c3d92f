//! Errors that carry their own exit code. Every module may return one; `main` maps
//! any error to `ringmux: <message>` and the code.

/// An error that carries its own exit code: 2 for bad usage in every subcommand (as
/// clap does for a malformed command line), `compare`'s 1 for a regression.
#[derive(Debug)]
pub struct ExitError {
    /// The process exit status to end with.
    pub code: u8,
    /// The one-line message `main` prints after `ringmux: `.
    pub msg: String,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ExitError {}

/// Exit code for an error returned by [`crate::run`]: the code of an [`ExitError`] in its
/// chain, else 1.
pub fn exit_code_of(e: &anyhow::Error) -> u8 {
    e.chain()
        .find_map(|c| c.downcast_ref::<ExitError>())
        .map_or(1, |x| x.code)
}
