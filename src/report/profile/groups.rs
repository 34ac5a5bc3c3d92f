//! The symbol-to-group table of the profile, here and only here ([`group_of`]); what
//! each group holds: the parent module's doc.

// The group names: each is the key in `Profile::groups` (stored in results.json) and
// the label charts and tables print. What each group holds: the parent module's doc.

/// Group: TCP/IP, sockets, skbs, user copies, loopback's softirq.
pub const NETWORK: &str = "network stack";
/// Group: the ring's own work (submission, completion posting, task work, internal
/// poll, provided buffers).
pub const IO_URING: &str = "io_uring";
/// Group: descriptor to file to socket (`fget`, `sockfd_lookup_light`, ...), what
/// registered files remove.
pub const FILE_LOOKUP: &str = "file lookup";
/// Group: epoll/poll/select/SIGIO bookkeeping and the readiness query (`sock_poll`,
/// `tcp_poll`), io_uring's internal poll included.
pub const READINESS: &str = "readiness";
/// Group: the kernel entry/exit path and per-call wrappers.
pub const SYSCALL: &str = "syscall entry";
/// Group: sleeping, waking, context switches, timers, clocks, and what is billed where
/// interrupts come back on.
pub const SCHED: &str = "scheduler and timers";
/// Group: kernel symbols no other rule claims.
pub const OTHER: &str = "other kernel";
/// Group: everything outside the kernel (ringmux itself, libc).
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
