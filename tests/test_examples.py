"""The examples run, replay and rebuild agree, and MNIST checkpoints resume."""
import os

import numpy as np
import pytest

import crad
from crad.examples import mnist, moons, toy

# the data root (mnist/, names/), as CI sets it
SHARED = os.environ.get("CRAD_DATA_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def test_toy_replay_and_rebuild_agree(capsys):
    with crad.Arena():
        replayed = toy.main(["--steps", "60"])
    with crad.Arena():
        rebuilt = toy.main(["--steps", "60", "--rebuild"])
    assert replayed == pytest.approx(rebuilt, rel=1e-9)
    assert "predicted" in capsys.readouterr().out


def test_moons_reaches_full_training_accuracy(capsys):
    with crad.Arena() as a:
        assert moons.main([]) == 1.0
        assert a.live == 0  # model and graphs gone once main returns
    X, y = moons.make_moons()
    assert X.shape == (100, 2) and set(y) == {-1.0, 1.0}


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "mnist")),
                    reason="the shared MNIST directory is not on this machine")
def test_mnist_trains_checkpoints_and_resumes(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    common = ["--data-dir", SHARED, "--limit", "640", "--checkpoint", str(ck)]
    with crad.Arena():
        acc1 = mnist.main(common + ["--epochs", "1"])
    assert ck.exists() and 0.5 < acc1 < 1.0
    with crad.Arena():
        acc2 = mnist.main(common + ["--epochs", "2", "--resume"])
    out = capsys.readouterr().out
    assert "resumed from" in out and "epoch 2:" in out and "epoch 1:" in out.split("resumed from")[0]
    d = dict(np.load(ck))
    assert int(d["extra/epoch"]) == 2 and "extra/opt_m" in d
    straight = tmp_path / "straight.npz"
    with crad.Arena():  # the same two epochs without a break: resuming reproduces them exactly
        acc = mnist.main(["--data-dir", SHARED, "--limit", "640", "--checkpoint", str(straight), "--epochs", "2"])
    assert acc == acc2
    s = np.load(straight)
    assert sorted(s.files) == sorted(d)
    for k in s.files:
        np.testing.assert_array_equal(s[k], d[k], err_msg=k)
    with crad.Arena():
        rebuilt = mnist.main(["--data-dir", SHARED, "--limit", "320", "--checkpoint", "", "--rebuild"])
    with crad.Arena():
        replayed = mnist.main(["--data-dir", SHARED, "--limit", "320", "--checkpoint", ""])
    assert rebuilt == pytest.approx(replayed, abs=2e-4)  # same training, up to the last bits
