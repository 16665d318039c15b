"""The compiled-kernel cache is keyed on the sources the kernels inline."""
import os
import shutil
import subprocess
import sys

import crad

PROBE = "import crad; print(crad.Value(0.5).tanh().data, crad.leaves([0.5]).tanh().data[0])"


def _run(root):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=root, env=env, capture_output=True, text=True,
                         check=True)
    return [float(x) for x in out.stdout.split()]


def test_an_edit_to_an_inlined_rule_recompiles(tmp_path):
    """Edit ops.py (inlined into the kernels, not the file that defines them)
    in a copy of the package: the next run must compute with the new rule."""
    pkg = tmp_path / "crad"
    shutil.copytree(os.path.dirname(crad.__file__), pkg, ignore=shutil.ignore_patterns("*.nbi", "*.nbc"))
    before = _run(tmp_path)
    assert before == [0.46211715726000974] * 2
    assert any(p.endswith(".nbi") for _, _, files in os.walk(pkg) for p in files)  # the cache was written
    ops = pkg / "ops.py"
    ops.write_text(ops.read_text().replace("return math_tanh(x)", "return math_tanh(x) + 1.0"))
    assert _run(tmp_path) == [1.46211715726000974] * 2


def test_digest_covers_every_kernel_source():
    from crad._config import sources_digest
    root = os.path.dirname(crad.__file__)
    assert sources_digest(root) == crad._config.DIGEST
