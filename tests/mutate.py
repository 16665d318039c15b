"""Mutation testing: does the suite catch small, realistic bugs?

    python -m tests.mutate                 # every mutant (many minutes)
    python -m tests.mutate --list          # the mutants and the tests aimed at each
    python -m tests.mutate NAME [NAME ...] # only these

Each mutant is one textual edit of one file. For each: copy the repository
(without .git and caches) to a temporary directory, plant the edit there,
delete numba's cache files (``cache=True`` would otherwise load kernels
compiled from the unmutated source), then run pytest with -x on the test
files most likely to catch it and, if those pass, on the whole suite. A
mutant is caught when pytest fails (or crashes: numba does not bounds-check).
Prints the score and the survivors. A developer tool, not part of CI.

Hypothesis runs with its example database off and a fixed seed, so that a
run is reproducible and no mutant benefits from another's saved failures.
Set CRAD_DATA_DIR (default: the shared MNIST directory if present) so that
the MNIST tests run in the copy too.

A mutant's ``old`` text must occur exactly once in its file: the script
refuses to run otherwise, so a refactoring that moves code is noticed here
instead of producing a meaningless "survivor".
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_MNIST = ROOT.parent.parent / "shared" / "data" / "mnist"

# (name, file, old, new, test files aimed at it); issue 15's seven first.
MUTANTS = [
    ("adam-without-bias-correction", "crad/kernels/update.py",
     "p[j] -= step * mk / (np.sqrt(vk) * inv + eps)", "p[j] -= lr * mk / (np.sqrt(vk) + eps)",
     ["test_optim.py", "test_nn.py"]),
    ("adam-parts-skip-their-last-parameter", "crad/kernels/update.py",
     "min(offsets[k] + lengths[k], hi)", "min(offsets[k] + lengths[k], hi - 1)", ["test_optim.py"]),
    ("sgd-momentum-sign-flipped", "crad/kernels/update.py",
     "vj = momentum * vel[j] + g[j]", "vj = -momentum * vel[j] + g[j]", ["test_optim.py", "test_nn.py"]),
    ("divide-by-negative-zero-gives-plus-inf", "crad/value.py",
     "return self * (1.0 / c if c else math.copysign(math.inf, c))",
     "return self * (1.0 / c if c else math.inf)", ["test_value.py"]),
    ("layer-parameters-without-bias", "crad/nn.py",
     "self._ids = block._ids.reshape(-1).copy()", "self._ids = block[:, :nin]._ids.reshape(-1).copy()",
     ["test_nn.py"]),
    ("default-mnist-hashes-unchecked", "crad/datasets.py",
     "sha256 = SHA256 if sha256 is None else sha256", "sha256 = {} if sha256 is None else sha256",
     ["test_datasets.py"]),
    ("tape-check-ops-and-wiring-only", "crad/tape.py",
     "return ops, lpos, rpos, pw, ident", "return ops, lpos, rpos", ["test_tape.py"]),
    ("batch-row-of-h-plus-h-freed-twice", "crad/kernels/replay.py",
     "and last[j] == p and (side == 0 or l != r):", "and last[j] == p:", ["test_batch.py", "test_tape.py"]),
    # ops: the rules
    ("mul-backward-operands-swapped", "crad/ops.py", "return y * g, x * g", "return x * g, y * g",
     ["test_ops.py", "test_dag.py"]),
    ("pow-backward-without-zero-exponent-guard", "crad/ops.py",
     "return (c * x ** (c - 1.0) * g if c != 0.0 else 0.0), 0.0", "return c * x ** (c - 1.0) * g, 0.0",
     ["test_ops.py", "test_dag.py"]),
    ("relu-gradient-one-at-zero", "crad/ops.py", "return (g if out > 0.0 else 0.0), 0.0",
     "return (g if out >= 0.0 else 0.0), 0.0", ["test_ops.py", "test_dag.py"]),
    ("tanh-backward-forgets-square", "crad/ops.py", "return (1.0 - out * out) * g, 0.0",
     "return (1.0 - out) * g, 0.0", ["test_ops.py", "test_dag.py"]),
    # kernels: allocation, sweeps, release, tapes
    ("low-not-propagated", "crad/kernels/alloc.py", "    return min(lo, low_j)", "    return lo",
     ["test_arena.py", "test_dag.py", "test_order.py"]),
    ("sweep-skips-lowest-slot", "crad/kernels/sweep.py", "for i in range(root, lo - 1, -1):",
     "for i in range(root, lo, -1):", ["test_order.py", "test_dag.py"]),
    ("epoch-wrap-keeps-old-marks", "crad/kernels/sweep.py", "        I[MARK, :] = 0\n", "",
     ["test_order.py"]),
    ("freed-slot-stays-live", "crad/kernels/sweep.py", "I[GEN, j] += 1  # odd -> even", "I[GEN, j] += 2  # odd",
     ["test_arena.py", "test_value.py"]),
    ("tape-backward-keeps-input-grads", "crad/kernels/replay.py", "        F[GRAD, fresh[k]] = 0.0\n",
     "        pass\n", ["test_tape.py", "test_batch.py"]),
    ("batch-grad-row-not-cleared", "crad/kernels/replay.py",
     "if f:\n                            for b in range(bn):\n                                G[j, b] = s",
     "if False:\n                            for b in range(bn):\n                                G[j, b] = s",
     ["test_batch.py", "test_tape.py"]),
    ("batch-fused-mul-takes-wrong-param", "crad/kernels/replay.py", "k = Q[i, Q_W] if fused else x",
     "k = x", ["test_batch.py", "test_threads.py"]),
    ("batch-param-sum-drops-the-last-sample", "crad/kernels/replay.py", "        s += U[i, b]\n",
     "        s += U[i, b] if b + 1 < n else 0.0\n", ["test_batch.py", "test_threads.py"]),
    # split programs (kernels.split)
    ("split-value-rows-reused-across-bins", "crad/kernels/replay.py",
     "        if fence[p]:\n            nfree = 0\n        if kind[p]", "        if kind[p]", ["test_split.py"]),
    ("split-grad-rows-reused-across-bins", "crad/kernels/replay.py",
     "            nfree += 1\n        if fence[p]:\n            nfree = 0\n    return nv, ng",
     "            nfree += 1\n    return nv, ng", ["test_split.py"]),
    ("split-chains-joined-by-left-operand-only", "crad/kernels/split.py", "for j in (lpos[p], rpos[p]):",
     "for j in (lpos[p],):", ["test_split.py"]),
    ("split-seed-row-moved", "crad/kernels/split.py", "    group[:1] = -1", "    pass", ["test_split.py"]),
    ("batch-operand-grad-overwritten", "crad/kernels/replay.py", "G[j, b] += s * G[gp, b]",
     "G[j, b] = s * G[gp, b]", ["test_batch.py", "test_threads.py"]),
    ("batch-fused-mul-drops-acc-grad", "crad/kernels/replay.py",
     "if case == FMA_IN and passed or case == MUL_SR and rk != ROW:",
     "if case == FMA_IN or case == MUL_SR and rk != ROW:", ["test_batch.py", "test_threads.py"]),
    ("batch-grad-row-handed-on-and-freed", "crad/kernels/replay.py", "if grow[p] >= 0 and not passed:",
     "if grow[p] >= 0:", ["test_batch.py", "test_split.py"]),
    ("batch-handed-on-row-skips-a-later-contribution", "crad/kernels/replay.py", "if j < 0 or j == gp and f:",
     "if j < 0 or j == gp:", ["test_batch.py", "test_split.py"]),
    ("batch-fast-param-grad-overwrites", "crad/kernels/replay.py",
     "F[GRAD, shared[k]] += s\n                    else:\n                        A[r0, k] += s\n"
     "                    if case",
     "F[GRAD, shared[k]] = s\n                    else:\n                        A[r0, k] += s\n"
     "                    if case",
     ["test_batch.py", "test_split.py"]),
    ("batch-fast-dot-drops-the-last-sample", "crad/kernels/replay.py",
     "    for b in range(n):\n        s += U[i, b] * W", "    for b in range(n - 1):\n        s += U[i, b] * W",
     ["test_batch.py", "test_threads.py"]),
    ("batch-add-drops-right-grad", "crad/kernels/replay.py", "j2, f2 = gy, rfirst", "j2, f2 = -1, rfirst",
     ["test_batch.py", "test_gpt.py"]),
    ("batch-param-times-row-drops-row-grad", "crad/kernels/replay.py",
     "j1, f1, s1 = gy, rfirst, F[DATA, shared[x]]\n                # Each",
     "j1, f1, s1 = -1, rfirst, F[DATA, shared[x]]\n                # Each", ["test_batch.py", "test_threads.py"]),
    ("batch-row-times-row-squares-the-left", "crad/kernels/replay.py", "V[v, b] = V[x, b] * V[y, b]",
     "V[v, b] = V[x, b] * V[x, b]", ["test_batch.py", "test_gpt.py"]),
    ("batch-row-product-in-add-drops-u-grad", "crad/kernels/replay.py",
     "j2, f2, s2 = gy, rfirst, F[DATA, shared[k]]", "j2, f2, s2 = -1, rfirst, F[DATA, shared[k]]",
     ["test_batch.py", "test_gpt.py"]),
    ("batch-row-product-in-add-ignores-constant-w", "crad/kernels/replay.py",
     "j2, f2, s2 = gy, rfirst, F[DATA, shared[Q[i, Q_W]]]", "j2, f2, s2 = gy, rfirst, 1.0",
     ["test_batch.py", "test_gpt.py"]),
    ("batch-row-product-in-add-loses-first-flag", "crad/kernels/replay.py",
     "gy[a[takes]], rf[a[takes]] = gy[m[takes]], rf[m[takes]]", "gy[a[takes]] = gy[m[takes]]",
     ["test_batch.py", "test_gpt.py"]),
    ("sink-moves-a-product-used-twice", "crad/kernels/replay.py",
     "(op[q] == MUL) & (uses[q] == 1)", "(op[q] == MUL) & (uses[q] >= 1)", ["test_batch.py", "test_gpt.py"]),
    ("split-direct-despite-a-shared-parameter", "crad/kernels/split.py",
     "return np.unique(pairs[0]).size == pairs.shape[1]", "return True", ["test_split.py"]),
    # facade
    ("vector-mean-divides-by-size", "crad/vector.py", "n = self.size if axis is None else self.shape[axis]",
     "n = self.size", ["test_vector.py", "test_nn.py"]),
    ("arena-grows-only-by-doubling", "crad/arena.py", "cap = min(max(2 * self.capacity, need), self.MAX_CAPACITY)",
     "cap = min(2 * self.capacity, self.MAX_CAPACITY)", ["test_arena.py", "test_vector.py"]),
    # nn, optimizers, losses
    ("mlp-relu-on-output-layer", "crad/nn.py", "nonlin=relu_out or i != len(nouts) - 1",
     "nonlin=relu_out or i != 0", ["test_nn.py", "test_micrograd_compat.py"]),
    ("zero-grad-misses-last-of-run", "crad/kernels/update.py",
     "F[GRAD, starts[k]:starts[k] + lengths[k]] = 0.0", "F[GRAD, starts[k]:starts[k] + lengths[k] - 1] = 0.0",
     ["test_optim.py", "test_nn.py"]),
    ("cross-entropy-shift-by-column-max", "crad/losses.py",
     "    z = logits - logits.data.max(axis=1, keepdims=True)\n    lse",
     "    z = logits - logits.data.max(axis=0, keepdims=True)\n    lse", ["test_nn.py"]),
    ("hinge-without-relu", "crad/losses.py", "(scores * -y + 1.0).relu().mean()", "(scores * -y + 1.0).mean()",
     ["test_nn.py", "test_micrograd_compat.py"]),
    # datasets
    ("idx-accepts-trailing-bytes", "crad/datasets.py", "if len(raw) != header + size:",
     "if len(raw) < header + size:", ["test_datasets.py"]),
    # tapes
    ("verify-never-checks", "crad/tape.py", "verifying = self.verify and (self.calls + 1) % self.verify == 0",
     "verifying = self.verify and (self.calls + 1) % self.verify == -1", ["test_tape.py"]),
    ("tape-check-ignores-parameters", "crad/tape.py",
     "ident = np.where(new_leaf | (a.I[K.OP][order] != LEAF), -1, order)[::-1]",
     "ident = np.where(a.I[K.OP][order] != LEAF, -1, 0)[::-1]", ["test_tape.py"]),
]

IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.nbi", "*.nbc", ".hypothesis", ".pytest_cache",
                                "*.egg-info", ".ruff_cache")


def plant(copy, file, old, new):
    path = copy / file
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{file}: the mutant's text occurs {text.count(old)} times (expected once): {old!r}")
    path.write_text(text.replace(old, new))


def pytest(copy, files, timeout):
    """True if the tests pass (the mutant survives)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    if SHARED_MNIST.is_dir():
        env.setdefault("CRAD_DATA_DIR", str(SHARED_MNIST))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0",
           "-o", "addopts=", *(f"tests/{f}" for f in files)]
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False  # a hang is a caught bug
    return r.returncode == 0


def run(mutant, timeout):
    name, file, old, new, targets = mutant
    with tempfile.TemporaryDirectory(prefix=f"crad-mutant-{name}-") as tmp:
        copy = pathlib.Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=IGNORE)
        plant(copy, file, old, new)
        # hypothesis' example database off: each mutant is judged on the same examples
        (copy / "tests" / "conftest.py").open("a").write(
            "\n\nimport hypothesis as _h\n_h.settings.register_profile('mutate', database=None)\n"
            "_h.settings.load_profile('mutate')\n")
        if pytest(copy, targets, timeout):
            return "survived" if pytest(copy, [], timeout) else "caught by the full suite"
        return "caught"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tests.mutate", description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="run only these mutants")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run (a hang counts as caught)")
    args = ap.parse_args(argv)
    if args.list:
        for name, file, _, _, targets in MUTANTS:
            print(f"{name:45s} {file:26s} {' '.join(targets)}")
        return 0
    unknown = set(args.names) - {m[0] for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutants: {', '.join(sorted(unknown))} (see --list)")
    chosen = [m for m in MUTANTS if not args.names or m[0] in args.names]
    for name, file, old, _, _ in chosen:  # refuse stale mutants before spending minutes on the others
        if (ROOT / file).read_text().count(old) != 1:
            raise SystemExit(f"{name}: its text no longer occurs exactly once in {file}; update the mutant")
    survivors = []
    for k, m in enumerate(chosen, 1):
        t0 = time.perf_counter()
        verdict = run(m, args.timeout)
        print(f"[{k}/{len(chosen)}] {m[0]}: {verdict} ({time.perf_counter() - t0:.0f} s)", flush=True)
        if verdict == "survived":
            survivors.append(m[0])
    caught = len(chosen) - len(survivors)
    print(f"\ncaught {caught} of {len(chosen)} ({100 * caught / len(chosen):.0f}%)")
    if survivors:
        print("survivors:\n  " + "\n  ".join(survivors))
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
