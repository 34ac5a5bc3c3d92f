//! Where a server's CPU goes: `perf report` output grouped into the parts an IO model
//! can and cannot change (`bench --profile`).
//!
//! The symbol-to-group table lives here and only here ([`group_of`]). Groups:
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

pub const NETWORK: &str = "network stack";
pub const IO_URING: &str = "io_uring";
pub const FILE_LOOKUP: &str = "file lookup";
pub const READINESS: &str = "readiness";
pub const SYSCALL: &str = "syscall entry";
pub const SCHED: &str = "scheduler and timers";
pub const OTHER: &str = "other kernel";
pub const USER: &str = "user space";

/// Every group, in the order charts stack them.
pub const GROUPS: [&str; 8] = [
    NETWORK,
    IO_URING,
    FILE_LOOKUP,
    READINESS,
    SYSCALL,
    SCHED,
    OTHER,
    USER,
];

/// Symbol rules, first match wins: (group, prefixes, exact names).
const RULES: &[(&str, &[&str], &[&str])] = &[
    // File lookups first: `io_file_get_*` would otherwise fall to io_uring and
    // `sockfd_lookup_light` to the network stack.
    (
        FILE_LOOKUP,
        &[
            "fget",
            "__fget",
            "fdget",
            "__fdget",
            "fput",
            "sockfd_lookup",
            "io_file_get_",
        ],
        &["sock_from_file"],
    ),
    // Readiness first: `sock_poll`/`tcp_poll` would otherwise fall to the network stack.
    (
        READINESS,
        &[
            "ep_",
            "__ep_",
            "do_epoll",
            "__x64_sys_epoll",
            "__se_sys_epoll",
            "__do_sys_epoll",
            "epoll_",
            "do_select",
            "core_sys_select",
            "__x64_sys_select",
            "__x64_sys_pselect",
            "do_sys_poll",
            "do_poll",
            "__x64_sys_poll",
            "__x64_sys_ppoll",
            "poll_",
            "__pollwait",
            "kill_fasync",
            "send_sigio",
            "__send_sigio",
            "send_sigurg",
            "fasync_",
            "do_sigtimedwait",
            "__x64_sys_rt_sigtimedwait",
            "signalfd_",
            "dequeue_signal",
            "collect_signal",
            "__send_signal",
            "send_signal",
            "complete_signal",
            "do_send_sig",
            "__x64_sys_fcntl",
            "select_",
        ],
        &[
            "sock_poll",
            "tcp_poll",
            "tcp_stream_is_readable",
            "mem_cgroup_sockets_enabled",
        ],
    ),
    (
        IO_URING,
        &[
            "io_",
            "__io_",
            "io_uring",
            "__x64_sys_io_uring",
            "__do_sys_io_uring",
            "tctx_task_work",
            "llist_",
        ],
        &["task_work_run", "task_work_add"],
    ),
    (
        SYSCALL,
        &[
            "entry_SYSCALL",
            "do_syscall",
            "syscall_",
            "exit_to_user_mode",
            "__x64_sys_",
            "__se_sys_",
            "__do_sys_",
            "x64_sys_call",
            "syscall_return",
            "entry_",
            "__entry_",
            "fpregs_",
            "switch_fpu",
            "restore_fpregs",
            "arch_exit_to_user_mode",
        ],
        &["irqentry_exit_to_user_mode"],
    ),
    (
        SCHED,
        &[
            "schedule",
            "__schedule",
            "pick_next",
            "put_prev",
            "set_next",
            "enqueue_",
            "dequeue_",
            "update_curr",
            "update_load",
            "update_cfs",
            "update_rq",
            "update_min_vruntime",
            "__update_",
            "hrtimer",
            "__hrtimer",
            "try_to_wake_up",
            "ttwu_",
            "wake_up",
            "__wake_up",
            "autoremove_wake",
            "default_wake_function",
            "finish_task_switch",
            "__switch_to",
            "switch_mm",
            "psi_",
            "select_task_rq",
            "native_sched_clock",
            "sched_",
            "ktime_",
            "tick_",
            "clockevents",
            "lapic_",
            "timerqueue",
            "__sysvec_apic_timer",
            "sysvec_apic_timer",
            "check_preempt",
            "resched_",
            "prepare_task_switch",
            "reweight_",
            "place_entity",
            "account_",
            "cpuacct_",
            "__calc_delta",
            "pv_native_safe_halt",
            "do_idle",
            "cpuidle",
            "default_idle",
            "hrtick",
            "raw_spin_rq",
            "_raw_spin_rq",
            "update_process_times",
            "read_tsc",
            "kvm_clock",
            "pvclock",
            "prepare_to_wait",
            "finish_wait",
            "yield_",
            "do_nanosleep",
            "futex_",
            "__futex",
            "_raw_spin_unlock_irq",
        ],
        &[
            "schedule_hrtimeout_range",
            "schedule_hrtimeout_range_clock",
            "wait_woken",
            "woken_wake_function",
        ],
    ),
    (
        NETWORK,
        &[
            "tcp_",
            "__tcp",
            "tcp4_",
            "inet_",
            "__inet",
            "inet6_",
            "ip_",
            "__ip_",
            "ipv4_",
            "ipv6_",
            "ip6_",
            "sk_",
            "__sk_",
            "sock_",
            "__sock",
            "sk_stream",
            "skb_",
            "__skb",
            "kfree_skb",
            "__kfree_skb",
            "consume_skb",
            "__alloc_skb",
            "alloc_skb",
            "napi_",
            "__napi",
            "net_rx",
            "net_tx",
            "__netif",
            "netif_",
            "process_backlog",
            "loopback_",
            "dev_",
            "__dev_",
            "validate_xmit",
            "nf_",
            "neigh_",
            "raw_local",
            "security_sock",
            "security_socket",
            "release_sock",
            "lock_sock",
            "__release_sock",
            "__lock_sock",
            "bbr_",
            "cubictcp",
            "bictcp",
            "_copy_to_iter",
            "_copy_from_iter",
            "copy_user",
            "__copy_user",
            "rep_movs",
            "copy_to_user",
            "copy_from_user",
            "__check_object_size",
            "check_heap_object",
            "simple_copy_to_iter",
            "__skb_datagram_iter",
            "csum_",
            "do_softirq",
            "__do_softirq",
            "__local_bh_enable",
            "local_bh_enable",
            "handle_softirqs",
            "irq_exit",
            "__sys_recvfrom",
            "__sys_sendto",
            "__sys_accept",
            "do_accept",
            "__sys_shutdown",
            "recv",
            "send",
            "mptcp",
            "bpf_skops",
            "__cgroup_bpf",
            "ip_finish",
            "dst_",
            "fib_",
            "rt_",
            "__sk_mem",
            "mem_cgroup_charge_skmem",
            "mem_cgroup_uncharge_skmem",
            "__build_skb",
            "page_frag",
            "skb_page_frag",
            "sock_def",
            "sk_reset_timer",
            "tcp_v4",
            "__tcp_v4",
            "__x64_sys_accept",
            "__x64_sys_recv",
            "__x64_sys_send",
            "__x64_sys_shutdown",
        ],
        &["__dev_queue_xmit", "dev_hard_start_xmit"],
    ),
];

/// The group of one perf sample's symbol. `kernel` is whether it is a kernel symbol
/// (perf's `[k]`); everything else is user space.
pub fn group_of(sym: &str, kernel: bool) -> &'static str {
    if !kernel {
        return USER;
    }
    // Compiler suffixes (".isra.0", ".constprop.0", ".cold") name the same function.
    let base = sym.split('.').next().unwrap_or(sym);
    for (group, prefixes, exact) in RULES {
        // The syscall wrappers of socket calls are network work, not entry cost.
        if *group == SYSCALL
            && [
                "__x64_sys_recv",
                "__x64_sys_send",
                "__x64_sys_accept",
                "__x64_sys_shutdown",
            ]
            .iter()
            .any(|p| base.starts_with(p))
        {
            continue;
        }
        if exact.contains(&base) || prefixes.iter().any(|p| base.starts_with(p)) {
            return group;
        }
    }
    OTHER
}

/// Parse `perf report --stdio --no-children --sort dso,sym -q` output: lines like
/// `    12.34%  [kernel.kallsyms]  [k] tcp_sendmsg_locked`. Lines that are not samples
/// (headers, blank lines, call chains) are skipped.
pub fn parse_perf_report(text: &str) -> Profile {
    let mut groups: BTreeMap<String, f64> = GROUPS.iter().map(|g| (g.to_string(), 0.0)).collect();
    let mut top = Vec::new();
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
        top.push((g.to_string(), sym.to_string(), pct));
    }
    top.sort_by(|a, b| b.2.total_cmp(&a.2));
    top.truncate(12);
    Profile {
        groups,
        top,
        runs: 1,
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
