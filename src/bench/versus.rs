//! `bench --versus BASE`: paired benchmarking. Every ringmux server of the matrix also
//! runs from the BASE binary (`SERVER@base`), right beside its head twin, so that a CI
//! runner's speed, its neighbours and the minute's noise fall on both alike and the
//! ratio base/head is what a gate judges (`compare --pair`), not the runner.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::bail;

use super::config::{BenchConfig, VersusMode};
use super::spec::ServerSpec;

/// The servers with, before each ringmux server, its twin run from `cfg.versus`.
pub fn with_base(servers: Vec<ServerSpec>, cfg: &BenchConfig) -> anyhow::Result<Vec<ServerSpec>> {
    let Some(base) = &cfg.versus else {
        return Ok(servers);
    };
    check_base(base)?;
    let mut out = Vec::with_capacity(servers.len() * 2);
    for s in servers {
        if let ServerSpec::Ringmux {
            backend,
            level,
            base: None,
        } = &s
        {
            out.push(ServerSpec::Ringmux {
                backend: backend.clone(),
                level: level.clone(),
                base: Some(base.clone()),
            });
        }
        out.push(s);
    }
    let mut names: Vec<String> = out.iter().map(ServerSpec::name).collect();
    names.sort();
    names.dedup();
    if names.len() != out.len() {
        bail!("--versus: a server named SERVER@base is already in the matrix");
    }
    if out.iter().all(|s| !is_base(s)) {
        bail!("--versus: no ringmux server in the matrix to pair (--backends names none)");
    }
    Ok(out)
}

fn is_base(s: &ServerSpec) -> bool {
    matches!(s, ServerSpec::Ringmux { base: Some(_), .. })
}

/// BASE must be a ringmux binary that runs here (`BASE --version` says "ringmux").
fn check_base(base: &Path) -> anyhow::Result<()> {
    if !base.is_file() {
        bail!("--versus {}: no such file", base.display());
    }
    let o = Command::new(base)
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    match o {
        Ok(o) if o.status.success() && o.stdout.starts_with(b"ringmux") => Ok(()),
        Ok(_) => bail!(
            "--versus {}: not a ringmux binary (`--version` does not say ringmux)",
            base.display()
        ),
        Err(e) => bail!("--versus {}: cannot run it: {e}", base.display()),
    }
}

/// The order the servers run in repeat `rep`: as listed (each base right before its
/// head) in even repeats, each pair swapped (head first) in odd ones, so neither side
/// always runs first, on a server warmed by the other or after a pause.
pub fn order(servers: &[ServerSpec], rep: u32) -> Vec<usize> {
    let mut v: Vec<usize> = (0..servers.len()).collect();
    if rep % 2 == 1 {
        let mut i = 0;
        while i + 1 < v.len() {
            if is_base(&servers[i]) {
                v.swap(i, i + 1);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    v
}

/// The runs of repeat `rep`, in order: each a group of servers run at once. One server
/// per group, in [`order`]; with [`VersusMode::Together`], each base with its head;
/// with `all` (`--together`), every server in one group, the first of them moving on
/// by one each repeat.
pub fn groups(servers: &[ServerSpec], rep: u32, mode: VersusMode, all: bool) -> Vec<Vec<usize>> {
    let mut order = order(servers, rep);
    if all {
        if !order.is_empty() {
            let n = order.len();
            order.rotate_left(rep as usize % n);
        }
        return vec![order];
    }
    if mode == VersusMode::Alternate {
        return order.into_iter().map(|i| vec![i]).collect();
    }
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in order {
        // with_base puts each base right before its head, and order keeps them adjacent.
        match out.last_mut() {
            Some(g) if g.len() == 1 && paired(&servers[g[0]], &servers[i]) => g.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// Whether `a` and `b` are one server's base and head, in either order.
fn paired(a: &ServerSpec, b: &ServerSpec) -> bool {
    match (a, b) {
        (
            ServerSpec::Ringmux {
                backend: ba,
                level: la,
                base: xa,
            },
            ServerSpec::Ringmux {
                backend: bb,
                level: lb,
                base: xb,
            },
        ) => ba == bb && la == lb && xa.is_some() != xb.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_alternate_which_side_runs_first() {
        let base = |b: &str| ServerSpec::Ringmux {
            backend: b.into(),
            level: None,
            base: Some("/x".into()),
        };
        let ext = ServerSpec::External {
            name: "e".into(),
            cmd: "c {addr}".into(),
        };
        let s = vec![
            base("uring"),
            ServerSpec::ringmux("uring"),
            ext,
            base("epoll"),
            ServerSpec::ringmux("epoll"),
        ];
        let names = |o: Vec<usize>| o.iter().map(|&i| s[i].name()).collect::<Vec<_>>();
        assert_eq!(
            names(order(&s, 0)),
            ["uring@base", "uring", "e", "epoll@base", "epoll"]
        );
        assert_eq!(
            names(order(&s, 1)),
            ["uring", "uring@base", "e", "epoll", "epoll@base"]
        );
        assert_eq!(order(&s, 2), order(&s, 0));
        // Together: each base with its head in one group, the rest alone.
        let groups = |rep| {
            groups(&s, rep, VersusMode::Together, false)
                .into_iter()
                .map(|g| g.iter().map(|&i| s[i].name()).collect::<Vec<_>>().join("+"))
                .collect::<Vec<_>>()
        };
        assert_eq!(groups(0), ["uring@base+uring", "e", "epoll@base+epoll"]);
        assert_eq!(groups(1), ["uring+uring@base", "e", "epoll+epoll@base"]);
        assert_eq!(
            super::groups(&s, 1, VersusMode::Alternate, false),
            order(&s, 1)
                .into_iter()
                .map(|i| vec![i])
                .collect::<Vec<_>>()
        );
    }
}
