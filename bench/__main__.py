"""python -m bench [--quick] [--only W0,W1,...] [--json PATH]

Runs DESIGN's workloads for crad and every installed peer (micrograd 0.1.0,
PyTorch scalar and tensor mode), prints markdown tables of medians with
ratios measured in the same run, and writes the rows as JSON.
"""
import argparse
import json
import sys
import time

from . import common


def ratio_rows(rows, key, peers=("micrograd", "torch scalar", "torch tensor", "crad per-Value"),
               higher_is_better=True):
    """Add 'x <peer>' columns: crad's figure over each peer's, same workload and size."""
    by = {}
    for r in rows:
        engine = r["engine"].split(" (")[0]  # "micrograd (5 images, extrapolated)" is micrograd's row
        by.setdefault((r["workload"], r.get("N") or r.get("batch")), {})[engine] = r
    fallback = {}
    for (wl, _), engs in sorted(by.items(), key=lambda t: (t[0][0], t[0][1] or 0)):
        for p in peers:
            if p in engs and engs[p].get(key):
                fallback[(wl, p)] = engs[p]
    for (wl, _size), engs in by.items():
        for name, r in engs.items():
            if not name.startswith("crad") or not r.get(key):
                continue
            for p in peers:
                ref = engs.get(p) or fallback.get((wl, p))
                if ref and ref.get(key):
                    x = r[key] / ref[key] if higher_is_better else ref[key] / r[key]
                    note = "" if ref is engs.get(p) else f" (peer at {ref.get('N') or ref.get('batch'):,})"
                    r[f"x {p}"] = f"{x:,.1f}x{note}"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    ap.add_argument("--quick", action="store_true", help="small sizes; finishes within 2 minutes")
    ap.add_argument("--only", default="W0,W1,W2,W3,W4", help="comma-separated workloads (default: all)")
    ap.add_argument("--json", default="bench/results.json", help="where to write the rows as JSON")
    ap.add_argument("--repeats", type=int, default=5, help="runs per crad figure (median)")
    ap.add_argument("--in-process", action="store_true",
                    help="run all workloads in this process (default: one fresh process per workload, so "
                         "that no engine inherits another workload's heap)")
    args = ap.parse_args(argv)
    only = [w for w in ("W0", "W1", "W2", "W3", "W4") if w in set(args.only.upper().split(","))]
    if not only:
        ap.error("--only names none of W0, W1, W2, W3, W4")
    t0 = time.perf_counter()
    if len(only) > 1 and not args.in_process:
        return _isolated(args, only, t0)
    mach = common.machine()
    if not args.in_process or len(only) > 1:
        print("## Machine\n")
        print("\n".join(f"- {k}: {v}" for k, v in mach.items()))
    out = dict(machine=mach, quick=args.quick, rows=[])

    def section(title, rows, columns, key=None, higher_is_better=True):
        if key:
            ratio_rows(rows, key, higher_is_better=higher_is_better)
            columns = columns + sorted({c for r in rows for c in r if c.startswith("x ")})
        print(f"\n## {title}\n")
        print(common.table(rows, columns))
        sys.stdout.flush()
        out["rows"].extend(rows)

    if "W0" in only:
        from . import engine
        sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
        rows = engine.w0(sizes, args.repeats, peer_max=10**4 if args.quick else 10**6)
        section("W0: y = sum a_i * b_i, build + backward + free (ns per node)", rows,
                ["engine", "N", "nodes", "warmup_s", "build_ns", "backward_ns", "free_ns", "total_s",
                 "nodes_per_s"], key="nodes_per_s")
        mem = engine.w0_memory(10**5 if args.quick else 10**6)
        section("W0 memory: RSS growth per live node", mem,
                ["engine", "N", "nodes", "bytes_per_node", "arena_bytes_per_slot"])
    if "W1" in only:
        from . import engine
        depths = [10**4, 10**5] if args.quick else [10**5, 10**6]
        section("W1: deep chain y = relu(y * 1.0001 + 0.001)", engine.w1(depths),
                ["engine", "depth", "nodes", "status", "total_s"])
    if "W2" in only:
        from . import nn
        section("W2: toy regression step, MLP 2-16-16-1, batch 32", nn.w2(args.quick),
                ["engine", "nodes", "step_ms", "steps_per_s", "first_step_s", "speedup"], key="steps_per_s")
    if "W3" in only or "W4" in only:
        from . import mnist
        if "W3" in only:
            section("W3: MNIST step, MLP 784-32-10, softmax cross-entropy", mnist.w3(args.quick),
                    ["engine", "batch", "nodes_per_sample", "ms_per_sample", "samples_per_s", "first_step_s"],
                    key="samples_per_s")
        if "W4" in only:
            note = " (quick: the rebuilt epoch is 6,400 images, extrapolated)" if args.quick else ""
            section("W4: MNIST epoch, MLP 784-50-10, batch 32" + note, mnist.w4(args.quick),
                    ["engine", "images", "s_per_epoch", "capture_s", "samples_per_s", "nodes_per_s",
                     "nodes_per_image", "test_accuracy", "wide_calls", "speedup"], key="s_per_epoch",
                    higher_is_better=False)
    print(f"\n(bench ran {time.perf_counter() - t0:.0f} s)")
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"rows written to {args.json}")


def _compile_section():
    from .compile import compile_times
    rows = compile_times()
    print("\n## Compile time: fresh processes, empty numba cache (cold) then filled (warm)\n")
    print(common.table(rows, ["cache", "import_s", "first_gradient_s", "first_mnist_step_s",
                              "capture_and_first_replay_s"]))
    sys.stdout.flush()
    return rows


def _isolated(args, only, t0):
    """Each workload in a fresh process; their rows merged into one JSON."""
    import os
    import subprocess
    import tempfile
    mach = common.machine()
    print("## Machine\n")
    print("\n".join(f"- {k}: {v}" for k, v in mach.items()))
    sys.stdout.flush()
    out = dict(machine=mach, quick=args.quick, rows=_compile_section())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for w in only:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            part = f.name
        cmd = [sys.executable, "-m", "bench", "--only", w, "--json", part, "--repeats", str(args.repeats),
               "--in-process"] + (["--quick"] if args.quick else [])
        done = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, text=True)
        text = done.stdout.split("\n(bench ran")[0]
        print(text.rstrip())
        sys.stdout.flush()
        if done.returncode == 0:
            with open(part) as f:
                out["rows"].extend(json.load(f)["rows"])
        else:
            print(f"\n({w} failed with exit code {done.returncode})")
        os.unlink(part)
    print(f"\n(bench ran {time.perf_counter() - t0:.0f} s)")
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=str)
    print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
