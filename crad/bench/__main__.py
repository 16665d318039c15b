"""crad bench [--quick] [--only W0,W2,...] [--rounds R] [--json PATH] [--md PATH]

Times crad's workloads (W0 a dot product's graph, W1 a deep chain, W2 a toy regression step, W3 and
W4 MNIST; compile times) for crad and every installed peer: a minimal pure-Python Value (always),
micrograd 0.1.0 (pip install "crad[bench]") and PyTorch (pip install torch). Each workload runs in a
fresh process with its engines interleaved round by round. Prints markdown tables of medians over
the rounds; beside each crad row, its ratio to every peer: the median of the per-round ratios, with
their min-max in brackets. Absolute times depend on the machine and its load (the run prints a load
indicator first); the ratios are what carries over.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import import_module

from . import WORKLOADS, common

NOTES = """\
Notes: every crad-vs-peer figure comes from interleaved rounds (the engines of a workload take
turns, the order alternating each round; the objects that exist before the rounds, such as the
imported libraries, are frozen out of the garbage collector's view, and a full collection precedes
each turn, so that no engine pays for another's objects or garbage); a ratio is the median of the
per-round ratios, with their min-max in brackets. The per-Value rows (crad facade, crad per-Value,
micrograd, python Value) run micrograd-style code, one Python operator per node; "python Value" is
`crad/bench/pyvalue.py`, a minimal `__slots__` Value with a non-recursive backward that builds the
same graph as crad. Their free phase (W0, W2) ends with a forced collection for every engine, since
only the collector frees micrograd's cycles; with the pre-existing objects frozen, each engine pays
for its own garbage only (micrograd left to automatic collection costs about 1.6x more per W2 step
in steady state). micrograd 0.1.0 has no exp or log, so its W3 and W4 steps use a squared-output
loss on the same MLP (W4's micrograd and rebuilt epochs are extrapolated from the images stated).
`crad replay` rows use `crad.capture`: W2 'replay' replays the captured graph of the whole batch;
'replay batched' and the W3/W4 replay rows replay one sample's graph for every sample
(`Tape.batch`). Node counts are the scalar graph's. PyTorch runs on one intra-op thread, as crad's
rows do unless they say 2 threads (its default pool spins and collapses on a loaded machine); W4
also runs it on 2 threads, the peer of crad's 2-thread row. PyTorch tensor mode is what a user
would pick instead; crad never uses matrix code for training.
"""


def select(only, quick):
    """Registered names for --only (case-insensitive; a name also selects its 'NAME ...' entries,
    so W0 brings 'W0 memory'), else every workload, or the quick ones with --quick."""
    if only is None:
        return [n for n, w in WORKLOADS.items() if w.quick or not quick]
    asked = [a.strip() for a in only.split(",") if a.strip()]

    def picks(a, name):
        return a.lower() in (name.lower(), name.lower().split()[0])
    unknown = [a for a in asked if not any(picks(a, n) for n in WORKLOADS)]
    if unknown or not asked:
        raise SystemExit(f"crad bench: unknown workload {', '.join(unknown) or '(none given)'} in --only; "
                         f"choose from {', '.join(WORKLOADS)}")
    return [n for n in WORKLOADS if any(picks(a, n) for a in asked)]


def run_workload(name, quick):
    module, function = WORKLOADS[name].target.split(":")
    rows = getattr(import_module(f"{__package__}.{module}"), function)(quick)
    for r in rows:
        r.setdefault("workload", name)
    return rows


def _in_fresh_process(name, args):
    """The workload's rows from a fresh Python, so that no engine inherits another workload's
    heap or warm caches; None if it failed (its error went to stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        part = os.path.join(tmp, "rows.json")
        cmd = [sys.executable, "-m", __package__, "--worker", name, "--json", part, "--rounds", str(args.rounds)]
        done = subprocess.run(cmd + (["--quick"] if args.quick else []), env=common.python_env())
        if done.returncode != 0:
            return None
        with open(part) as f:
            return json.load(f)


def main(argv=None, prog="crad bench", json_default=None):
    doc = __doc__.split("\n\n", 1)
    skipped = ", ".join(n for n, w in WORKLOADS.items() if not w.quick)
    ap = argparse.ArgumentParser(prog=prog, description=doc[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"small sizes and only the rows for a first impression, within 2 minutes (skips {skipped}; "
                         "--only can still ask for them)")
    ap.add_argument("--only", help=f"comma-separated workloads among {', '.join(WORKLOADS)} "
                                   "(W0 also selects 'W0 memory'); default: all, or the quick ones")
    ap.add_argument("--rounds", type=int, default=common.ROUNDS,
                    help="interleaved rounds per comparison (default %(default)s)")
    ap.add_argument("--json", default=json_default, help="write the rows as JSON here")
    ap.add_argument("--md", help="also write the output as markdown, with notes (e.g. bench/RESULTS.md)")
    ap.add_argument("--in-process", action="store_true",
                    help="run every workload in this process (default: a fresh process each)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    common.ROUNDS = args.rounds
    if args.quick:
        common.MIN_S = 0.1  # fewer repeats of the fast engines: --quick stays within 2 minutes under load
    if args.worker:
        rows = run_workload(args.worker, args.quick)
        with open(args.json, "w") as f:
            json.dump(rows, f, default=str)
        return
    names = select(args.only, args.quick)
    t0 = time.perf_counter()
    text = []

    def emit(s=""):
        print(s, flush=True)
        text.append(s)

    info = common.machine()
    info["load before the run"] = common.load_line()
    emit("## Machine\n")
    for k, v in info.items():
        emit(f"- {k}: {v}")
    emit(f"- method: {args.rounds} interleaved rounds per comparison; ratio = median of the per-round ratios "
         "(min-max); PyTorch on 1 thread, as crad (W4: on 1 and on 2); absolute times depend on the machine "
         "and its load")
    if args.quick and args.only is None:
        emit(f"- quick: small sizes; skips {skipped}")
    out, failed = dict(info, quick=args.quick, rounds=args.rounds, rows=[]), []
    for name in names:
        t = time.perf_counter()
        rows = run_workload(name, args.quick) if args.in_process else _in_fresh_process(name, args)
        emit(f"\n## {WORKLOADS[name].title}\n")
        if rows is None:
            failed.append(name)
            emit(f"({name} failed: its error is above)")
        else:
            emit(common.table(rows))
            emit(f"\n({name} took {time.perf_counter() - t:.0f} s)")
            out["rows"] += rows
    out["load after the run"] = common.load_line()
    emit(f"\n- load after the run: {out['load after the run']}")
    emit(f"- bench ran {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"rows written to {args.json}")
    if args.md:
        with open(args.md, "w") as f:
            f.write(f"# Benchmark results\n\n`{prog} {' '.join(argv if argv is not None else sys.argv[1:])}`"
                    f"\n\n{NOTES}\n" + "\n".join(text) + "\n")
        print(f"markdown written to {args.md}")
    if failed:
        sys.exit(f"{prog}: {', '.join(failed)} failed")


if __name__ == "__main__":
    main()
