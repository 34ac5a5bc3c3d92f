#!/usr/bin/env python3
"""The table of docs/bench.md's section on `--client`: server CPU per message of
io_uring over epoll, cell by cell, with ringmux's load and with the tokio client, and
io_uring enters per message, from two finished bench folders.

    scripts/client-table.py RINGMUX_DIR TOKIO_DIR [URING EPOLL]

RINGMUX_DIR: `ringmux bench --client ringmux ... --out RINGMUX_DIR`; TOKIO_DIR: the
same with `--client tokio`. URING and EPOLL name the two servers (default `uring` and
`epoll`). Per cell: the median of the per-repeat ratios (repeat r of io_uring over
repeat r of epoll, adjacent in time) with their range; the io_uring server's syscalls
per message in the measured window (the bench's figure; on io_uring nearly all are
`io_uring_enter`); and `io_uring_enter` per message over the server's whole life,
warm-up included, from its own stats (runs/*.server.json: enters / (bytes_in / size)).
"""
import json
import os
import statistics
import sys


def load(d):
    with open(os.path.join(d, "results.json")) as f:
        r = json.load(f)
    client = r["args"].get("client", "ringmux")
    cells = {}
    for c in r["cells"]:
        shape = c["id"].split("/", 1)[1]
        cells[(c["server"], shape)] = c
    return r, client, cells


def enters_per_msg(d, cell):
    """io_uring_enter per echoed message over each run's server life."""
    out = []
    stem = cell["id"].replace("/", "_").replace(":", "_")
    for rep in range(1, len(cell["runs"]) + 1):
        p = os.path.join(d, "runs", f"{stem}-r{rep}.server.json")
        try:
            with open(p) as f:
                j = json.load(f)
        except OSError:
            continue
        msgs = j.get("bytes_in", 0) / max(cell["size"], 1)
        if msgs > 0:
            out.append(j.get("syscalls", {}).get("io_uring_enter", 0) / msgs)
    return out


def fmt_ratios(v):
    if not v:
        return "–"
    return f"**{statistics.median(v):.2f}** ({min(v):.2f}–{max(v):.2f})"


def fmt_range(v, digits=3):
    if not v:
        return "–"
    return f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}–{max(v):.{digits}f})"


def main():
    if len(sys.argv) not in (3, 5):
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        sys.exit(2)
    uring, epoll = (sys.argv[3], sys.argv[4]) if len(sys.argv) == 5 else ("uring", "epoll")
    dirs = sys.argv[1:3]
    runs = [load(d) for d in dirs]
    for (_, client, _), want in zip(runs, ("ringmux", "tokio")):
        if client != want:
            print(f"client-table.py: expected a --client {want} folder, got {client}", file=sys.stderr)
            sys.exit(2)
    shapes = []
    for (srv, shape) in runs[0][2]:
        if srv == uring and shape not in shapes:
            shapes.append(shape)
    print(f"| cell | {uring}/{epoll} CPU per msg, ringmux load | {uring}/{epoll} CPU per msg, tokio client "
          f"| {uring} syscalls/msg (window), ringmux load | same, tokio client "
          f"| {uring} enters/msg (server life), ringmux load | same, tokio client "
          f"| {epoll} busy, ringmux load | same, tokio client |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for shape in shapes:
        row = [shape]
        ratios, sysc, enters, busy = [], [], [], []
        for d, (_, _, cells) in zip(dirs, runs):
            u, e = cells.get((uring, shape)), cells.get((epoll, shape))
            if not u or not e:
                ratios.append([]); sysc.append([]); enters.append([]); busy.append([])
                continue
            rs = [a["cpu_ns_per_msg"] / b["cpu_ns_per_msg"]
                  for a, b in zip(u["runs"], e["runs"])
                  if a.get("cpu_ns_per_msg") and b.get("cpu_ns_per_msg")]
            ratios.append(rs)
            sysc.append([r["syscalls_per_msg"] for r in u["runs"] if r.get("syscalls_per_msg") is not None])
            enters.append(enters_per_msg(d, u))
            busy.append([r["server_busy"] for r in e["runs"] if r.get("server_busy") is not None])
        row += [fmt_ratios(ratios[0]), fmt_ratios(ratios[1]),
                fmt_range(sysc[0]), fmt_range(sysc[1]),
                fmt_range(enters[0]), fmt_range(enters[1]),
                fmt_range(busy[0], 2), fmt_range(busy[1], 2)]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
