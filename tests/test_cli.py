"""The crad command: every subcommand answers --help, and does its job."""
import pytest

import crad
from crad import cli


def test_help_everywhere(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0 and "train" in capsys.readouterr().out
    cli.main(["train", "--help"])
    assert "toy" in capsys.readouterr().out
    for sub in (["train", "toy", "--help"], ["train", "moons", "--help"], ["train", "mnist", "--help"],
                ["train", "gpt", "--help"],
                ["info", "--help"]):
        with pytest.raises(SystemExit) as e:
            cli.main(sub)
        assert e.value.code == 0 and "usage" in capsys.readouterr().out


def test_bench_help_anywhere(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the suite ships in the package: no checkout needed
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--help"])
    assert e.value.code == 0 and "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown workload W9"):
        cli.main(["bench", "--only", "W9"])


def test_train_and_info(capsys):
    with crad.Arena():
        cli.main(["train", "toy", "--steps", "20"])
    assert "final loss" in capsys.readouterr().out
    cli.main(["info"])
    out = capsys.readouterr().out
    assert "numba" in out and "default arena" in out
    with pytest.raises(SystemExit, match="unknown example"):
        cli.main(["train", "nope"])
