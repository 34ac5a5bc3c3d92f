//! `compare RESULTS --pair BASE,HEAD`: the two sides of a paired bench (`bench
//! --versus`) taken from one results file. A pair names two servers; their cells with
//! the same shape become one compared entry, under the head's cell id.

use super::entries::Entry;
use crate::report::input::bad_input;
use crate::results::schema::BASE_SUFFIX;

/// (base server, head server) of each `--pair` given, `@base` expanded over `entries`.
fn parse(entries: &[(String, Entry)], pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let servers: Vec<&str> = entries
        .iter()
        .filter_map(|(id, _)| id.split_once('/').map(|(s, _)| s))
        .collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for p in pairs {
        if p == BASE_SUFFIX {
            for s in &servers {
                if let Some(h) = s.strip_suffix(BASE_SUFFIX)
                    && !out.iter().any(|(b, _)| b == s)
                {
                    out.push((s.to_string(), h.to_string()));
                }
            }
            continue;
        }
        let Some((b, h)) = p.split_once(',') else {
            return Err(bad_input(format!(
                "--pair {p:?}: must be BASE,HEAD (two server names, e.g. uring@base,uring) or @base"
            )));
        };
        for s in [b, h] {
            if !servers.contains(&s) {
                let mut known = servers.clone();
                known.dedup();
                return Err(bad_input(format!(
                    "--pair {p:?}: no server {s:?} in the file (servers: {})",
                    known.join(", ")
                )));
            }
        }
        out.push((b.to_string(), h.to_string()));
    }
    if out.is_empty() {
        return Err(bad_input(
            "--pair @base: no SERVER@base in the file (a bench run with --versus makes them)",
        ));
    }
    Ok(out)
}

/// Entries by cell id, as `compare` reads them from a file.
type Entries = Vec<(String, Entry)>;

/// The base and head sides: for each pair, the base server's cells renamed to the head
/// server's ids, and the head server's cells.
pub fn split(entries: &[(String, Entry)], pairs: &[String]) -> anyhow::Result<(Entries, Entries)> {
    let (mut base, mut head) = (Vec::new(), Vec::new());
    for (b, h) in parse(entries, pairs)? {
        for (id, e) in entries {
            let Some((server, shape)) = id.split_once('/') else {
                continue;
            };
            if server == b {
                // The IO model without the base's name, so that it matches the head's.
                let mut e = e.clone();
                e.io = e.io.replacen(b.as_str(), &h, 1);
                base.push((format!("{h}/{shape}"), e));
            } else if server == h {
                head.push((id.clone(), e.clone()));
            }
        }
    }
    Ok((base, head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compare::entries::Figures;
    use crate::results::schema::RunMetrics;

    fn e() -> Entry {
        let f = Figures::Run(RunMetrics::default());
        Entry {
            median: f.clone(),
            runs: vec![f],
            open_rate: None,
            io: String::new(),
        }
    }

    fn ids(v: &[(String, Entry)]) -> Vec<&str> {
        v.iter().map(|(i, _)| i.as_str()).collect()
    }

    #[test]
    fn pairs_rename_the_base_cells_to_the_head_ids() {
        let entries: Vec<(String, Entry)> = [
            "uring@base/closed/c1/s128",
            "uring/closed/c1/s128",
            "epoll@base/closed/c1/s128",
            "epoll/closed/c1/s128",
            "tokio/closed/c1/s128",
        ]
        .iter()
        .map(|i| (i.to_string(), e()))
        .collect();
        let (b, h) = split(&entries, &["uring@base,uring".into()]).unwrap();
        assert_eq!(ids(&b), ["uring/closed/c1/s128"]);
        assert_eq!(ids(&h), ["uring/closed/c1/s128"]);
        let (b, h) = split(&entries, &["@base".into()]).unwrap();
        assert_eq!(ids(&b), ["uring/closed/c1/s128", "epoll/closed/c1/s128"]);
        assert_eq!(ids(&h), ids(&b));
        // Any two servers pair (an external against ringmux, say).
        let (b, _) = split(&entries, &["tokio,epoll".into()]).unwrap();
        assert_eq!(ids(&b), ["epoll/closed/c1/s128"]);
        for bad in ["uring", "nope,uring", "uring,nope"] {
            let err = split(&entries, &[bad.into()]).unwrap_err();
            assert_eq!(crate::error::exit_code_of(&err), 2, "{bad}");
        }
        let plain = &entries[1..2];
        assert!(split(plain, &["@base".into()]).is_err());
    }
}
