//! A server in the matrix, and the warnings the plan keeps for results.json.

use std::path::PathBuf;

use crate::results::schema::BASE_SUFFIX;

/// A server in the matrix.
#[derive(Debug, Clone)]
pub enum ServerSpec {
    /// ringmux itself: a backend of `server::Backend::NAMES`, optional io_uring level
    /// with its `+OPTION`s (`full+sqpoll`).
    Ringmux {
        /// One of `server::Backend::NAMES`.
        backend: String,
        /// The io_uring level and its `+OPTION`s (`full+sqpoll`); None: the best here.
        level: Option<String>,
        /// None: this ringmux. Some: the `bench --versus` binary, named `SERVER@base`.
        base: Option<PathBuf>,
    },
    /// Any other server: a shell command with `{addr}` in it.
    External {
        /// Its name in the matrix (`NAME=` of `--external`).
        name: String,
        /// The shell command; `{addr}` is replaced by the address to listen on.
        cmd: String,
    },
}

impl ServerSpec {
    /// The server's name in the matrix and the cell ids (`uring:full`, `epoll@base`, `srv`).
    pub fn name(&self) -> String {
        match self {
            ServerSpec::Ringmux {
                backend,
                level,
                base,
            } => format!(
                "{backend}{}{}",
                level.as_ref().map_or(String::new(), |l| format!(":{l}")),
                if base.is_some() { BASE_SUFFIX } else { "" }
            ),
            ServerSpec::External { name, .. } => name.clone(),
        }
    }

    /// A ringmux backend with no level given.
    pub fn ringmux(backend: &str) -> ServerSpec {
        ServerSpec::Ringmux {
            backend: backend.to_string(),
            level: None,
            base: None,
        }
    }

    /// ringmux's io_uring proactor: its stats name the features it runs with.
    pub fn is_uring(&self) -> bool {
        matches!(self, ServerSpec::Ringmux { backend, .. } if backend == "uring")
    }
}

/// Say `n` on stderr as a warning and keep it for results.json.
pub fn warn(notes: &mut Vec<String>, n: String) {
    eprintln!("ringmux: warning: {n}");
    notes.push(n);
}
