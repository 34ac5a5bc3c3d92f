//! `ringmux completions SHELL` and `ringmux man`: shell completions (clap_complete)
//! and a roff man page (clap_mangen), both generated from the same clap definitions
//! as the parser, so they cannot disagree with it.

use std::io::{self, Write};

use clap::{Args, CommandFactory, ValueEnum};

use super::Cli;

/// A shell `ringmux completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash: `source <(ringmux completions bash)`, or save it under
    /// /usr/share/bash-completion/completions/ringmux.
    Bash,
    /// Zsh: save as `_ringmux` in a folder of your `$fpath`.
    Zsh,
    /// Fish: save as ~/.config/fish/completions/ringmux.fish.
    Fish,
}

/// `ringmux completions`: which shell.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `ringmux man`: which page.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The page of one subcommand (e.g. `serve`, written as ringmux-serve(1)) instead
    /// of the main page ringmux(1).
    pub subcommand: Option<String>,
}

/// Write the completion script for `shell` to `out`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    let g = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(g, &mut cmd, "ringmux", out);
    Ok(())
}

/// Write the man page (roff) of ringmux, or of one of its subcommands, to `out`.
/// An unknown subcommand is an error naming the ones there are.
pub fn write_man(subcommand: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => {
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .filter(|n| n != "help")
                .collect();
            let Some(sub) = cmd.find_subcommand(name) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no subcommand '{name}' (there are: {})", names.join(", ")),
                ));
            };
            // ringmux-serve(1), as git and cargo name theirs.
            let n = format!("ringmux-{name}");
            sub.clone().name(n.clone()).bin_name(n)
        }
    };
    clap_mangen::Man::new(page).render(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_every_subcommand() {
        for shell in Shell::value_variants() {
            let mut out = Vec::new();
            write_completions(*shell, &mut out).unwrap();
            let s = String::from_utf8(out).unwrap();
            for sub in [
                "serve", "load", "bench", "report", "compare", "merge", "probe",
            ] {
                assert!(s.contains(sub), "{shell:?} completions lack {sub}");
            }
            assert!(
                s.contains("--backend"),
                "{shell:?} completions lack --backend"
            );
        }
    }

    #[test]
    fn man_pages_render() {
        let mut out = Vec::new();
        write_man(None, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with(".ie") || s.contains(".TH ringmux"),
            "{s:.200}"
        );
        let mut out = Vec::new();
        write_man(Some("serve"), &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("ringmux\\-serve") && s.contains("backend"),
            "{s:.400}"
        );
        let e = write_man(Some("nope"), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("there are: serve"), "{e}");
    }
}
