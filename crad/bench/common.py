"""Timing, interleaving, machine description and reporting shared by the workloads.

The machine is shared and its load drifts by 2-4x within hours, unevenly across engines, so
an absolute time alone says little. Every comparison therefore runs the engines in interleaved
rounds (``interleave``) and reports, for each crad engine and each peer, the median of the
per-round ratios with their min-max (``summarize``).
"""
import datetime
import gc
import os
import platform
import statistics
import time

import numpy as np

ROUNDS = 3    # interleaved rounds per comparison; the runner sets it from --rounds
MIN_S = 0.3   # each engine's figure in a round is the median of its runs over at least this long (s)


def rss_bytes():
    """Resident set size of this process now (Linux), else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class Clock:
    """Phase timer: ``c.lap("build")`` adds the time since the last lap to phase "build";
    ``c.skip()`` leaves the time since the last lap out of every phase."""

    def __init__(self, collect=True):
        if collect:
            gc.collect()
        self.t = time.perf_counter()
        self.phases = {}

    def lap(self, name):
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.t
        self.t = now

    def skip(self):
        self.t = time.perf_counter()


def repeat_for(run):
    """Call ``run()`` (returning phase -> seconds) until MIN_S seconds have passed, at least
    once; the median of each phase. A fast engine is timed many times, a slow one once."""
    results, t0 = [], time.perf_counter()
    while not results or time.perf_counter() - t0 < MIN_S:
        results.append(run())
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def interleave(engines, rounds):
    """Measure every engine ``rounds`` times, alternating the order (A B C, C B A, A B C...), so
    that round k of every engine ran close in time to round k of every other.

    The engines share a process, so garbage is kept apart. Everything that exists before the
    rounds (the libraries every engine imported, the engines' models) is frozen out of the
    collector's view (``gc.freeze``): a collection then costs what an engine's own objects cost,
    not what torch's and numba's do (that made a forced collection cost 170 ms at W0's N = 10^4).
    And a full collection (untimed) precedes each measurement, so that garbage one engine leaves
    behind (micrograd's closures form cycles) is not collected on another's clock (that measured
    python Value's W2 step at 460 ms instead of 60 ms).

    engines: name -> measure(), a callable returning a dict of figures for one round.
    Returns name -> list of those dicts, one per round."""
    names = list(engines)
    out = {n: [] for n in names}
    gc.collect()
    gc.freeze()
    try:
        for r in range(rounds):
            for n in names if r % 2 == 0 else reversed(names):
                gc.collect()
                out[n].append(engines[n]())
    finally:
        gc.unfreeze()
    return out


def in_arena(arena, fn):
    """fn, run with ``arena`` current: engines interleave, so none may hold a ``with`` open."""
    def run(*args):
        with arena:
            return fn(*args)
    return run


def is_crad(engine):
    return engine.startswith("crad")


def summarize(samples, key, higher_is_better=True, **fields):
    """One row per engine from ``interleave``'s samples: the engine, ``fields``, then the median
    over rounds of each numeric figure (other figures from the first round).

    Each crad engine's row gets, for every peer (an engine not named crad...), an 'x PEER'
    column: the median over rounds of crad's ``key`` over the peer's (inverted when lower is
    better), with the min-max of those per-round ratios; ``ratios`` keeps the numbers. A round
    where either figure is missing (a peer that failed) gives no ratio."""
    rows = []
    for name, runs in samples.items():
        row = dict(engine=name, **fields)
        for k in runs[0]:
            values = [r.get(k) for r in runs]
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                row[k] = statistics.median_low(values)  # a count stays a count
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[k] = statistics.median(values)
            else:
                row[k] = values[0]
        rows.append(row)
    for row in rows:
        if not is_crad(row["engine"]):
            continue
        for peer, runs in samples.items():
            if is_crad(peer):
                continue
            ratios = []
            for mine, theirs in zip(samples[row["engine"]], runs):
                a, b = mine.get(key), theirs.get(key)
                if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0:
                    ratios.append(a / b if higher_is_better else b / a)
            if ratios:
                r = dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios), pairs=len(ratios))
                row.setdefault("ratios", {})[peer] = r
                row[f"x {peer}"] = ratio_text(r)
    return rows


def on_threads(n, measure):
    """measure() run with crad on n threads (the setting restored after)."""
    import crad

    def run():
        before = crad.get_num_threads()
        crad.set_num_threads(min(n, before) if n > before else n)
        try:
            return dict(measure(), threads=crad.get_num_threads())
        finally:
            crad.set_num_threads(before)
    return run


def thread_speedup(samples, rows, one, many, key, higher_is_better=False):
    """Give the row of engine ``many`` a 'speedup' column: the median (min-max)
    over rounds of its ``key`` against engine ``one``'s in the same round."""
    ratios = []
    for a, b in zip(samples[one], samples[many]):
        x, y = a.get(key), b.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x > 0 and y > 0:
            ratios.append(y / x if higher_is_better else x / y)
    for row in rows:
        if row["engine"] == many and ratios:
            row["speedup"] = ratio_text(dict(median=statistics.median(ratios), min=min(ratios), max=max(ratios)))
    return rows


def ratio_text(r):
    """'1,040x (980-1,100)': the median of the per-round ratios, then their min-max."""
    def num(x):
        return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"
    return f"{num(r['median'])}x ({num(r['min'])}-{num(r['max'])})"


def python_env():
    """The environment for a child Python that must import this same crad (installed, a
    checkout, or a ``pip install --target`` directory on PYTHONPATH)."""
    import crad
    root = os.path.dirname(os.path.dirname(os.path.abspath(crad.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))


def torch(threads=1):
    """PyTorch on ``threads`` intra-op threads: one by default, as crad runs. Its default pool
    (one thread per core) spins while it waits: on this 2-core machine under load, W3's batch-1
    step took 45 ms with 2 threads against 1.5 ms with 1, so a 2-thread figure measured the
    neighbours. A multi-threaded comparison sets the same count for crad and PyTorch."""
    import torch as t
    t.set_num_threads(threads)
    return t


def installed(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def load_probe(seconds=1.0):
    """Memory bandwidth available now, in GB/s: numpy copies of a 64 MiB array (past any cache)
    for ``seconds``. A loaded machine shows lower figures (DESIGN measured about 25 GB/s idle on
    this project's machine kind); compare it between runs before comparing their times."""
    a = np.ones(8 << 20)
    b = np.empty_like(a)
    copies, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(b, a)
        copies += 1
    return 2 * a.nbytes * copies / (time.perf_counter() - t0) / 1e9  # each copy reads and writes


def load_line():
    """The load indicator: copy bandwidth and the 1/5/15-minute load averages."""
    bandwidth = load_probe()
    try:
        avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        avg = "unknown"
    return f"{bandwidth:.1f} GB/s numpy copy bandwidth (1 s probe), load average {avg}"


def machine():
    """What the figures were measured on: the date, the machine line and the versions."""
    import numba

    import crad
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    peers = []
    for peer in ("micrograd", "torch"):
        try:
            mod = __import__(peer)
            peers.append(f"{peer} {getattr(mod, '__version__', 'installed')}")
        except ImportError:
            peers.append(f"{peer} not installed")
    return dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                machine=f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
                crad=f"{crad.__version__} from {os.path.dirname(os.path.abspath(crad.__file__))} "
                     f"({crad_lines():,} lines of engine)",
                versions=f"python {platform.python_version()}, numba {numba.__version__}, numpy {np.__version__}; "
                         + ", ".join(peers))


def crad_lines():
    """Non-blank lines of crad's engine (the package minus this suite), so growth of the core is visible."""
    import crad
    root = os.path.dirname(crad.__file__)
    n = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("bench", "__pycache__")]
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name)) as f:
                    n += sum(1 for line in f if line.strip())
    return n


def table(rows):
    """A markdown table of dict rows: every key in first-seen order ('x PEER' ratio columns last),
    except the workload name and the raw ratios."""
    columns = []
    for r in rows:
        columns += [c for c in r if c not in columns and c not in ("workload", "ratios")]
    columns = [c for c in columns if not c.startswith("x ")] + [c for c in columns if c.startswith("x ")]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(out)


def fmt(x):
    if x is None:
        return ""
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        if abs(x) >= 1:
            return f"{x:.2f}"
        return f"{x:.3g}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)
