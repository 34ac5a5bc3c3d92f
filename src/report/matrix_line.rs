//! The sentence that says how a bench ran (servers, load, timing, repeats, how the
//! servers shared the machine, CPUs), for the report's matrix row: results.json's
//! `args` read by a person instead of as raw JSON.

/// The bench matrix (results.json's `args`) as a sentence a reader can take in at a
/// glance, instead of the raw JSON: servers, load, timing, repeats and CPUs.
pub fn matrix_text(args: &serde_json::Value) -> String {
    let list = |k: &str| -> Vec<String> {
        args[k].as_array().map_or_else(Vec::new, |a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
    };
    let and = |v: &[String]| match v {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    let num = |k: &str| args[k].as_f64();
    let mut parts = Vec::new();
    let servers = list("servers");
    if !servers.is_empty() {
        parts.push(format!("Servers: {}.", and(&servers)));
    }
    if let Some(p) = args["peers"].as_object().filter(|p| !p.is_empty()) {
        let v: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap_or("?")))
            .collect();
        parts.push(format!("Reference peers: {}.", and(&v)));
    }
    let conns = list("conns");
    if !conns.is_empty() {
        let size = num("size").map_or_else(String::new, |s| format!(", {s}-byte messages"));
        parts.push(format!("Load: {} connection(s){size}.", and(&conns)));
    }
    // Which client drove the load (absent in files from before `bench --client`).
    match args["client"].as_str() {
        Some("ringmux") => parts.push("Load generator: ringmux's own.".into()),
        Some(c) => parts.push(format!(
            "Load generator: the {c} reference client (bench --client {c}), not ringmux's own."
        )),
        None => {}
    }
    if let (Some(d), Some(w)) = (num("duration_s"), num("warmup_s")) {
        // How the servers of a cell shared the machine (`--together`, `--versus-mode`).
        let how = if args["together"].as_bool() == Some(true) {
            "servers run together, each with its own load (--together)"
        } else if args["versus_mode"].as_str() == Some("together") {
            "each base run together with its head (--versus-mode together), the rest interleaved (A B A B …)"
        } else {
            "servers interleaved (A B A B …)"
        };
        let reps = num("repeat").map_or_else(String::new, |r| format!("; {r} repeat(s), {how}"));
        parts.push(format!(
            "Each run: {w} s warm-up (unrecorded), then {d} s measured{reps}."
        ));
    }
    let cpus = |k: &str| {
        args[k].as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as usize)
                .collect::<Vec<_>>()
        })
    };
    match (cpus("server_cpus"), cpus("load_cpus")) {
        (Some(s), Some(l)) if !s.is_empty() && !l.is_empty() => parts.push(format!(
            "Server pinned to CPU {}, load generator to CPU {}.",
            crate::os::cpus::format_cpu_list(&s),
            crate::os::cpus::format_cpu_list(&l)
        )),
        _ if args.get("server_cpus").is_some() => {
            parts.push("Server and load generator not pinned apart.".into())
        }
        _ => {}
    }
    if let Some(t) = num("server_threads").filter(|&t| t > 1.0) {
        parts.push(format!("ringmux servers ran {t} event loops."));
    }
    if args["quick"].as_bool() == Some(true) {
        parts.push("Quick matrix (--quick).".into());
    }
    if parts.is_empty() {
        return args.to_string();
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_reads_as_a_sentence() {
        let args = serde_json::json!({
            "backends": ["uring", "epoll"], "conns": [1, 50, 500], "size": 128, "duration_s": 1.5, "warmup_s": 0.5,
            "repeat": 3, "quick": false, "servers": ["uring", "epoll", "tokio", "monoio"], "server_cpus": [0],
            "server_threads": 1, "load_cpus": [1],
        });
        assert_eq!(
            matrix_text(&args),
            "Servers: uring, epoll, tokio and monoio. Load: 1, 50 and 500 connection(s), 128-byte messages. \
             Each run: 0.5 s warm-up (unrecorded), then 1.5 s measured; 3 repeat(s), servers interleaved (A B A B …). \
             Server pinned to CPU 0, load generator to CPU 1."
        );
        let unpinned = serde_json::json!({"servers": ["epoll"], "server_cpus": null, "load_cpus": null, "quick": true});
        assert_eq!(
            matrix_text(&unpinned),
            "Servers: epoll. Server and load generator not pinned apart. Quick matrix (--quick)."
        );
        assert_eq!(matrix_text(&serde_json::json!({"x": 1})), r#"{"x":1}"#);
        // How the servers shared the machine is said.
        let together = serde_json::json!({"servers": ["epoll"], "duration_s": 1, "warmup_s": 0.3, "repeat": 2, "together": true});
        assert!(
            matrix_text(&together).contains(
                "2 repeat(s), servers run together, each with its own load (--together)."
            ),
            "{}",
            matrix_text(&together)
        );
        // The client that drove the load is said, whichever it was.
        let with = |c: &str| matrix_text(&serde_json::json!({"servers": ["epoll"], "client": c}));
        assert_eq!(
            with("ringmux"),
            "Servers: epoll. Load generator: ringmux's own."
        );
        assert_eq!(
            with("tokio"),
            "Servers: epoll. Load generator: the tokio reference client (bench --client tokio), not ringmux's own."
        );
    }
}
