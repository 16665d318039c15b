"""Timing, machine description and reporting shared by the workloads."""
import gc
import os
import platform
import statistics
import time


def rss_bytes():
    """Resident set size of this process now (Linux), else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def median_phases(run, repeats):
    """Run ``run()`` (returning a dict of phase -> seconds) and take medians."""
    results = [run() for _ in range(repeats)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


class Clock:
    """Phase timer: ``c.lap("build")`` records the time since the last lap."""

    def __init__(self):
        gc.collect()
        self.t = time.perf_counter()
        self.phases = {}

    def lap(self, name):
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.t
        self.t = now


def installed(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def machine():
    """What the figures were measured on."""
    import numba
    import numpy

    import crad
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(),
                crad=crad.__version__, numba=numba.__version__, numpy=numpy.__version__,
                crad_lines=crad_lines())
    for peer in ("micrograd", "torch"):
        try:
            mod = __import__(peer)
            info[peer] = getattr(mod, "__version__", "installed")
        except ImportError:
            info[peer] = "not installed"
    return info


def crad_lines():
    """Non-blank lines of crad/*.py, so growth of the core is visible."""
    import crad
    root = os.path.dirname(crad.__file__)
    n = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name)) as f:
                    n += sum(1 for line in f if line.strip())
    return n


def table(rows, columns):
    """A markdown table of dict rows."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)


def fmt(x):
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        if abs(x) >= 1:
            return f"{x:.2f}"
        return f"{x:.3g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def si(x, unit):
    """1.5e6 -> '1.50 M<unit>'."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def duration(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def thread_pairs(run, repeats, time_key, counts=(1, 2)):
    """run(n) (a row dict) at each thread count n, alternated (1, 2, 1, 2,
    ...) so that both see the same machine load. Returns the median row per
    count by ``time_key`` (a time: lower is better), its engine labelled with
    n, and for the later counts the median of the per-pair speedups over the
    first count (each pair's ratios listed)."""
    import crad
    before = crad.get_num_threads()
    runs = {n: [] for n in counts}
    try:
        for _ in range(repeats):
            for n in counts:
                crad.set_num_threads(n)
                runs[n].append(run(n))
    finally:
        crad.set_num_threads(before)
    rows = []
    for n in counts:
        row = dict(sorted(runs[n], key=lambda r: r[time_key])[len(runs[n]) // 2])
        row["engine"] = f"{row['engine']} {n} thread{'s' if n > 1 else ''}"
        if n != counts[0]:
            ratios = [a[time_key] / b[time_key] for a, b in zip(runs[counts[0]], runs[n])]
            row["speedup"] = f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})"
        rows.append(row)
    return rows
