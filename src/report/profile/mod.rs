//! Where a server's CPU goes: `perf report` output grouped into the parts an IO model
//! can and cannot change (`bench --profile`).
//!
//! The symbol-to-group table lives in one place, [`groups`] ([`group_of`]). Groups:
//! - **network stack**: TCP/IP, sockets, skbs, the copies to and from user memory,
//!   loopback's softirq. On loopback the sender's CPU also runs the receiver's TCP
//!   input, so this is most of any server's time and no IO model removes it.
//! - **io_uring**: the ring's own work (submission, completion posting, task work,
//!   internal poll, provided buffers).
//! - **file lookup**: descriptor to file to socket (`fget`, `fdget`, `__fget_light`,
//!   `sockfd_lookup_light`, `sock_from_file`, `fput`, and io_uring's `io_file_get_*`).
//!   Every backend pays it per call on a raw descriptor (epoll's `recvfrom`/`sendto`
//!   as much as io_uring's RECV/SEND), so it is a group of its own: registered files
//!   remove most of it, and only here does that show.
//! - **readiness**: epoll/poll/select/SIGIO bookkeeping, including `sock_poll` and
//!   `tcp_poll` (the readiness query a proactor's internal poll makes too: there it
//!   counts here as well, which is honest: it is the readiness cost inside io_uring).
//! - **syscall entry**: the kernel entry/exit path and per-call wrappers.
//! - **scheduler and timers**: sleeping, waking, context switches, hrtimers, clocks.
//!   Also `_raw_spin_unlock_irqrestore`/`_irq`: on a VM without a hardware PMU, perf
//!   samples on a timer interrupt, and work done with interrupts off is billed where
//!   they come back on. A call graph (`perf record -g`) of a 1-connection echo server
//!   on this project's VM put 45% of all samples there, nearly all under
//!   `sock_def_readable`: waking the peer process on the other CPU (an IPI, a VM exit).
//! - **other kernel**: kernel symbols no rule above claims (memory management, RCU...).
//! - **user space**: everything outside the kernel (ringmux itself, libc).

use std::collections::BTreeMap;

use super::fmt::esc;

pub use crate::results::profile::Profile;

pub mod groups;

pub use groups::*;

/// Parse `perf report --stdio --no-children --sort pid,dso,sym -q` output: lines like
/// `    12.34%  2136:ringmux  [kernel.kallsyms]  [k] tcp_sendmsg_locked` (or without
/// the pid column). A symbol sampled in several threads has a line per thread: they
/// add up. Lines that are not samples (headers, blank lines, call chains) are skipped.
pub fn parse_perf_report(text: &str) -> Profile {
    let mut groups: BTreeMap<String, f64> = GROUPS.iter().map(|g| (g.to_string(), 0.0)).collect();
    let mut syms: BTreeMap<(String, String), f64> = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with('#') {
            continue;
        }
        let Some((pct, rest)) = l.split_once('%') else {
            continue;
        };
        let Ok(pct) = pct.trim().parse::<f64>() else {
            continue;
        };
        // rest: "  dso  [k] symbol" (or "[.]" for user space).
        let (kernel, sym) = if let Some((_, s)) = rest.split_once("[k]") {
            (true, s.trim())
        } else if let Some((_, s)) = rest.split_once("[.]") {
            (false, s.trim())
        } else {
            continue;
        };
        let g = group_of(sym, kernel);
        *groups.get_mut(g).expect("every group is present") += pct;
        *syms.entry((g.to_string(), sym.to_string())).or_default() += pct;
    }
    let mut top: Vec<(String, String, f64)> =
        syms.into_iter().map(|((g, s), v)| (g, s, v)).collect();
    top.sort_by(|a, b| b.2.total_cmp(&a.2));
    top.truncate(12);
    Profile {
        groups,
        top,
        runs: 1,
        scope: None,
    }
}

/// Combine runs: each group's share is the mean over runs (every run is recorded for
/// the same measured duration, so each weighs the same).
pub fn combine(profiles: &[Profile]) -> Option<Profile> {
    if profiles.is_empty() {
        return None;
    }
    let n = profiles.len() as f64;
    let mut groups: BTreeMap<String, f64> = GROUPS.iter().map(|g| (g.to_string(), 0.0)).collect();
    let mut syms: BTreeMap<(String, String), f64> = BTreeMap::new();
    for p in profiles {
        for (g, v) in &p.groups {
            *groups.entry(g.clone()).or_default() += v / n;
        }
        for (g, s, v) in &p.top {
            *syms.entry((g.clone(), s.clone())).or_default() += v / n;
        }
    }
    let mut top: Vec<(String, String, f64)> =
        syms.into_iter().map(|((g, s), v)| (g, s, v)).collect();
    top.sort_by(|a, b| b.2.total_cmp(&a.2));
    top.truncate(12);
    Some(Profile {
        groups,
        top,
        runs: profiles.len() as u32,
        scope: profiles[0].scope.clone(),
    })
}

/// Colours of the groups in charts (stable, colour-blind friendly enough).
pub const GROUP_COLORS: [&str; 8] = [
    "#4e79a7", "#e15759", "#9c755f", "#f28e2b", "#76b7b2", "#59a14f", "#bab0ac", "#b07aa1",
];

/// A stacked horizontal bar per (label, profile): 100% split into the groups, each
/// segment labelled with its share when it is wide enough. Plain SVG.
pub fn stacked_svg(rows: &[(String, &Profile)]) -> String {
    use std::fmt::Write;
    let (w, label_w, row_h, top) = (1000.0, 300.0, 30.0, 50.0);
    let bar_w = w - label_w - 20.0;
    let h = top + row_h * rows.len() as f64 + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="14">"#
    );
    // Legend, from the left edge (it is wider than the bars' column).
    let mut x = 10.0;
    for (g, c) in GROUPS.iter().zip(GROUP_COLORS) {
        let _ = write!(
            s,
            r#"<rect x="{x}" y="8" width="14" height="14" fill="{c}"/><text x="{}" y="20">{g}</text>"#,
            x + 18.0
        );
        x += 28.0 + 8.0 * g.len() as f64;
    }
    for (i, (label, p)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            y + row_h * 0.65,
            esc(label)
        );
        let total: f64 = p.groups.values().sum::<f64>().max(1e-9);
        let mut x = label_w;
        for (g, c) in GROUPS.iter().zip(GROUP_COLORS) {
            let v = p.groups.get(*g).copied().unwrap_or(0.0);
            let seg = bar_w * v / total;
            if seg <= 0.0 {
                continue;
            }
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{seg:.1}" height="{:.1}" fill="{c}"><title>{g}: {v:.1}%</title></rect>"#,
                y + 3.0,
                row_h - 6.0
            );
            if seg > 36.0 {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="white" font-size="12">{v:.0}%</text>"#,
                    x + seg / 2.0,
                    y + row_h * 0.65
                );
            }
            x += seg;
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice of real `perf report --stdio --no-children --sort dso,sym -q` output,
    /// recorded from a ringmux server (io_uring full, 500 connections) and from an
    /// epoll one on this project's 2-core VM, kernel 6.18.
    const SAMPLE: &str = "\
    10.11%  [kernel.kallsyms]  [k] tcp_sendmsg_locked
     6.20%  [kernel.kallsyms]  [k] _copy_to_iter
     4.02%  [kernel.kallsyms]  [k] tcp_ack
     3.20%  [kernel.kallsyms]  [k] llist_reverse_order
     2.10%  [kernel.kallsyms]  [k] io_poll_task_func
     1.50%  [kernel.kallsyms]  [k] fget
     1.30%  [kernel.kallsyms]  [k] io_issue_sqe
     2.00%  [kernel.kallsyms]  [k] ep_poll_callback
     1.90%  [kernel.kallsyms]  [k] sock_poll
     1.00%  [kernel.kallsyms]  [k] tcp_poll
     1.20%  [kernel.kallsyms]  [k] entry_SYSCALL_64_after_hwframe
     0.80%  [kernel.kallsyms]  [k] syscall_exit_to_user_mode
     2.50%  [kernel.kallsyms]  [k] __schedule
     0.70%  [kernel.kallsyms]  [k] hrtimer_start_range_ns
     0.60%  [kernel.kallsyms]  [k] try_to_wake_up
     0.90%  [kernel.kallsyms]  [k] kmem_cache_alloc_node_noprof
     0.30%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore
     1.40%  ringmux            [.] ringmux::server::uring::Proactor::reap
     0.50%  libc.so.6          [.] __memmove_avx512_unaligned_erms
     0.40%  [kernel.kallsyms]  [k] tcp_rcv_established.isra.0

# Samples: 5K of event 'cpu-clock:ppp'
";

    #[test]
    fn groups_a_recorded_sample() {
        let p = parse_perf_report(SAMPLE);
        // Hundredths of a percent, so float sums compare exactly.
        let g = |k: &str| (p.groups[k] * 100.0).round() as i64;
        assert_eq!(g(NETWORK), 1011 + 620 + 402 + 40);
        assert_eq!(g(IO_URING), 320 + 210 + 130);
        assert_eq!(g(FILE_LOOKUP), 150);
        assert_eq!(g(READINESS), 200 + 190 + 100);
        assert_eq!(g(SYSCALL), 120 + 80);
        assert_eq!(g(SCHED), 250 + 70 + 60 + 30);
        assert_eq!(g(OTHER), 90);
        assert_eq!(g(USER), 140 + 50);
        assert_eq!(
            p.top[0],
            (NETWORK.to_string(), "tcp_sendmsg_locked".to_string(), 10.11)
        );
        assert_eq!(p.groups.len(), GROUPS.len());
    }

    #[test]
    fn socket_syscall_wrappers_are_network_work() {
        assert_eq!(group_of("__x64_sys_recvfrom", true), NETWORK);
        assert_eq!(group_of("__x64_sys_sendto", true), NETWORK);
        assert_eq!(group_of("__x64_sys_epoll_wait", true), READINESS);
        assert_eq!(group_of("__x64_sys_io_uring_enter", true), IO_URING);
        assert_eq!(group_of("__x64_sys_close", true), SYSCALL);
        assert_eq!(group_of("tcp_poll", false), USER);
    }

    #[test]
    fn file_lookups_are_their_own_group_whoever_calls() {
        for s in [
            "fget",
            "__fget_light",
            "__fget_files",
            "fdget",
            "__fdget_pos",
            "fput",
            "sockfd_lookup_light",
            "sock_from_file",
            "io_file_get_normal",
            "io_file_get_fixed",
        ] {
            assert_eq!(group_of(s, true), FILE_LOOKUP, "{s}");
        }
        // Neighbours that are not lookups stay where they were.
        assert_eq!(group_of("io_issue_sqe", true), IO_URING);
        assert_eq!(group_of("sock_sendmsg", true), NETWORK);
        assert_eq!(group_of("__sys_recvfrom", true), NETWORK);
    }

    #[test]
    fn a_symbol_of_several_threads_adds_up() {
        let p = parse_perf_report(
            "  30.00%  2136:ringmux  [kernel.kallsyms]  [k] tcp_ack\n  20.00%  2137:ringmux  [kernel.kallsyms]  [k] tcp_ack\n  50.00%  2137:ringmux  ringmux  [.] main\n",
        );
        assert_eq!(p.groups[NETWORK], 50.0);
        assert_eq!(
            p.top,
            vec![
                (NETWORK.to_string(), "tcp_ack".to_string(), 50.0),
                ("user space".to_string(), "main".to_string(), 50.0)
            ]
        );
    }

    #[test]
    fn combine_means_each_run() {
        let a = parse_perf_report(
            "  60.00%  [kernel.kallsyms]  [k] tcp_ack\n  40.00%  ringmux  [.] main\n",
        );
        let b = parse_perf_report(
            "  80.00%  [kernel.kallsyms]  [k] tcp_ack\n  20.00%  ringmux  [.] main\n",
        );
        let c = combine(&[a, b]).unwrap();
        assert_eq!(c.groups[NETWORK], 70.0);
        assert_eq!(c.groups[USER], 30.0);
        assert_eq!(c.runs, 2);
        assert!(combine(&[]).is_none());
        let svg = stacked_svg(&[("uring c500".into(), &c)]);
        assert!(
            svg.contains("network stack") && svg.contains("70%") && svg.ends_with("</svg>"),
            "{svg}"
        );
    }
}
