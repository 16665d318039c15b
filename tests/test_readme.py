"""Every python block of the README runs and prints what the README shows.

The convention (follow it when you add a block): each ```python block is
followed, after one blank line, by a ```text block holding exactly what the
code prints. In that text, ``...`` stands for any text (use it for what
legitimately varies between runs, such as slot numbers, and nothing else).
The blocks run in order, each in a fresh namespace, in the default arena.
"""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
# a python block and the text block right after it, if any
BLOCKS = re.findall(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", README.read_text(), re.S)


def matches(expected, got):
    """got equals expected, where each ``...`` of expected matches any text."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got, re.S) is not None


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


def test_matches_understands_the_ellipsis():
    assert matches("node ... (log)\n", "node 21667 (log)\n")
    assert not matches("node ... (log)\n", "node 21667 (exp)\n")
    assert not matches("loss 0.0083\n", "loss 0.0084\n")


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_readme_block_prints_what_the_readme_shows(k, capsys):
    code, shown = BLOCKS[k]
    assert shown, (f"README.md python block {k} has no ```text block after it showing what it prints "
                   "(see the convention at the top of tests/test_readme.py)")
    exec(compile(code, f"README.md block {k}", "exec"), {})
    got = "\n".join(line.rstrip() for line in capsys.readouterr().out.splitlines()) + "\n"
    assert matches(shown, got), f"README.md block {k} printed:\n{got}\nthe README shows:\n{shown}"
