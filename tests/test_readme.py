"""Every python code block of the README runs."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_readme_block_runs(k, capsys):
    exec(compile(BLOCKS[k], f"README.md block {k}", "exec"), {})
    assert capsys.readouterr().out.strip()  # each block prints what it computed
