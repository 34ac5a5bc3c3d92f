//! One integration binary: drives the real `ringmux` over loopback sockets.
//! Server tests run once per backend and io_uring feature level (`backend_test!`);
//! the harness (spawning with deadlines, servers, skips) is in `util`.

mod util;

/// `bench` end to end: the quick matrix, two server threads, idle connections.
mod it_bench;
/// `bench --client tokio`: the tokio reference client drives the matrix; what it refuses.
mod it_bench_client;
/// Random fault rates under verified load, every backend and level (scripts/chaos.sh).
mod it_chaos;
/// Chat on every backend: fan-out order, slow receivers dropped, /quit, line limit.
mod it_chat;
/// scripts/: the CI baseline rule, the YAML examples.
mod it_ci;
/// scripts/ci-bench.sh --paired: the gate in one run, the merge-base that fails to build.
mod it_ci_paired;
/// Exit codes, option spellings, addresses and a closed stdout, as a newcomer meets them.
mod it_cli;
/// The docs: their command blocks run, their flags exist, every flag is documented,
/// the schema tables match real output.
mod it_docs;
/// Provided-buffer exhaustion and the RINGMUX_FAULTS fault layer.
mod it_faults;
/// The measurement files: .hgrm, .hlog (also read by an independent decoder), merge.
mod it_formats;
/// Resident memory and idle cost per idle connection, per backend variant.
mod it_idle;
/// The IO-model lab: bench --preset models --quick end to end.
mod it_lab;
/// Timeouts, --max-conns, the unconsumed-input cap and the fd limit on every backend.
mod it_limits;
/// `ringmux load` against small echo servers of the tests' own: counting, verifying,
/// errors, drivers, output files.
mod it_load;
/// Several `ringmux load` agents against one server, merged into one run.
mod it_load_agents;
/// `ringmux load` in open loop: coordinated omission corrected, rates kept or not,
/// SIGINT, histogram files.
mod it_load_open;
/// What only some IO models do (select's refusal, sigio's overflow, busypoll, threads).
mod it_models;
/// External servers stopped as a group, base against head (--versus), compare --pair.
mod it_paired;
/// Thread-per-core: --threads, --pin, --cpus on every backend.
mod it_percore;
/// `bench --profile`: one recording of the servers' CPUs, reported per server.
mod it_profile;
/// HTTP on every backend, load --proto, ringmux client.
mod it_proto;
/// compare and report over result files made here.
mod it_report;
/// io_uring: CQ overflow, failed submissions, refused registrations, no io_uring at all.
mod it_ring;
/// The server on every backend: echo, connections, resets, drain, snapshots, bad input.
mod it_serve;
/// Connection churn with resets: RSS and descriptors flat (scripts/soak.sh).
mod it_soak;
/// io_uring's work per message, counted: enters and completions per level, the counted
/// wait, the registered file table, sends to a full socket.
mod it_uring_work;
