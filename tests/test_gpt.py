"""The character GPT (crad.examples.gpt): parity with a per-scalar reference
on tests/naive.py's Value, node counts, tape cache, memory, sampling, CLI."""
import os

import numpy as np
import pytest
from naive import Value as RefValue

import crad
from crad import Value
from crad.examples import gpt

SHARED = os.environ.get("CRAD_DATA_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
HAVE_NAMES = os.path.isfile(os.path.join(SHARED, "names", "names.txt"))
# 1 to 17 characters: 2 to 16 positions (the longest is cut at block_size)
DOCS = ["emma", "ava", "x", "olivia", "mia", "eve", "bo", "abcdefghijklmnopq", "ana", "emma", "zoe"]
CHARS = sorted(set("".join(DOCS)))


def reference_training(state, docs, steps):
    """microgpt's loop on the plain reference Value: losses and final weights."""
    P = gpt.scalar_params(state, RefValue)
    flat = [p for name in state for row in P[name] for p in row]
    m, v, losses = [0.0] * len(flat), [0.0] * len(flat), []
    tokens_of = gpt.GPT.encode.__get__(gpt.GPT(CHARS, n_embd=4, n_head=1, block_size=16))  # vocabulary only
    for step in range(steps):
        loss = gpt.scalar_loss(P, tokens_of(docs[step % len(docs)]))
        loss.backward()
        losses.append(float(loss.data))
        gpt.scalar_adam(flat, m, v, step, steps)
    return losses, {name: np.array([[float(p.data) for p in row] for row in P[name]]) for name in state}


@pytest.mark.parametrize("replay", [True, False])
def test_training_matches_the_per_scalar_reference(replay):
    steps = 7
    with crad.Arena() as a:
        model = gpt.GPT(CHARS, seed=3)
        state = model.state_dict()
        losses = gpt.train(model, DOCS, steps, replay=replay, progress=False)
        ref_losses, ref_state = reference_training(state, DOCS, steps)
        np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=1e-10)
        for name, w in model.state_dict().items():
            np.testing.assert_allclose(w, ref_state[name], rtol=0, atol=1e-10, err_msg=name)
        assert not np.allclose(model.state_dict()["wte"], state["wte"])  # it did train
        if replay:  # one tape per length seen: "emma", "ava" ... ("emma" again replays)
            assert sorted(k[0][0] for k in model.tapes.tapes) == [2, 3, 4, 5, 7]
            assert a.live == model.num_parameters + model.tapes.nodes
        else:
            assert len(model.tapes) == 0 and a.live == model.num_parameters
        del model
        assert a.live == 0


def test_every_length_and_the_numpy_forward_agree():
    """Replay, rebuild and numpy inference give the same loss, from 2 positions
    to block_size (a 17-character name is cut at 16)."""
    with crad.Arena():
        model = gpt.GPT(CHARS, seed=1)
        P = gpt.scalar_params(model.state_dict(), RefValue)
        for name in DOCS:
            X, Y = model.onehots(name)
            tokens = model.encode(name)
            ref = float(gpt.scalar_loss(P, tokens).data)
            rebuilt = model.loss(crad.leaves(X), crad.leaves(Y)).data
            replayed = model.tapes(X, Y)
            logits = model.logits(tokens[:len(X)])
            z = logits - logits.max(axis=1, keepdims=True)
            numpy_loss = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(X)), tokens[1:len(X) + 1]])
            assert rebuilt == pytest.approx(ref, abs=1e-12) and replayed == pytest.approx(ref, abs=1e-12)
            assert numpy_loss == pytest.approx(ref, abs=1e-10)
        assert sorted(k[0][0] for k in model.tapes.tapes) == [2, 3, 4, 5, 7, 16]


def test_batched_replay_averages_the_single_replays():
    names = ["eve", "zoe", "mia"]  # one length: one tape, one batch
    with crad.Arena():
        model = gpt.GPT(CHARS, seed=2)
        X = np.stack([model.onehots(n)[0] for n in names])
        Y = np.stack([model.onehots(n)[1] for n in names])
        model.zero_grad()
        per = model.tapes.batch(X, Y)
        grad = model.parameters().grad
        model.zero_grad()
        single = [model.tapes(x, y, backward=True) for x, y in zip(X, Y)]
        np.testing.assert_allclose(per, single, rtol=0, atol=1e-12)
        np.testing.assert_allclose(grad, model.parameters().grad / 3, rtol=1e-10, atol=1e-14)
        assert len(model.tapes) == 1


def test_graph_is_the_per_scalar_graph_plus_the_one_hot_rows():
    """Node by node kind: crad's Vector graph has the per-scalar model's nodes
    (built on crad.engine.Value) plus what one-hot rows cost."""
    from crad import kernels as K

    def kinds(a):
        """Live nodes per op code."""
        top = int(a.M[K.M_TOP])
        return np.bincount(a.I[K.OP, :top][a.I[K.GEN, :top] % 2 == 1], minlength=8)

    with crad.Arena() as a:
        model = gpt.GPT(CHARS, seed=0)
        V, E = model.vocab, model.n_embd
        P = gpt.scalar_params(model.state_dict(), Value)
        for name in ("x", "olivia", "abcdefghijklmnopq"):
            X, Y = model.onehots(name)
            n = len(X)
            before = kinds(a)
            graph = model.loss(crad.leaves(X), crad.leaves(Y))
            vec = kinds(a) - before
            del graph
            before = kinds(a)
            graph = gpt.scalar_loss(P, model.encode(name))
            scalar = kinds(a) - before
            del graph
            extra = np.zeros(8, int)
            extra[crad.Op.LEAF] = 2 * n * V  # the one-hot input rows
            # embedding: V*E muls, (V-1)*E adds; target: V muls, V-1 adds, and the V-1
            # probabilities the per-scalar graph drops (they do not reach its loss)
            extra[crad.Op.MUL] = n * (V * E + V + V - 1)
            extra[crad.Op.ADD] = n * ((V - 1) * E + V - 1)
            np.testing.assert_array_equal(vec - scalar, extra)
            t = model.tapes.tape(X, Y)
            assert t.nodes - t.parameters == vec.sum()


def test_memory_sampling_and_release():
    with crad.Arena() as a:
        model = gpt.GPT(CHARS, seed=0)
        gpt.train(model, DOCS, 12, batch_size=2, progress=False)
        live = a.live
        assert live == model.num_parameters + model.tapes.nodes and len(model.tapes) >= 2
        names = gpt.sample(model, 8, temperature=0.7, seed=5)
        assert a.live == live  # sampling builds no graph
        assert len(names) == 8 and all(set(n) <= set(CHARS) and len(n) <= model.block_size for n in names)
        assert names == gpt.sample(model, 8, temperature=0.7, seed=5) != gpt.sample(model, 8, 0.7, seed=6)
        model.tapes.release()
        assert a.live == model.num_parameters
        del model
        assert a.live == 0


def test_state_dict_round_trip_and_bad_input():
    with crad.Arena() as a:
        model = gpt.GPT(CHARS, seed=4)
        state = model.state_dict()
        assert list(state) == ["wte", "wpe", "lm_head", "layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv",
                               "layer0.attn_wo", "layer0.mlp_fc1", "layer0.mlp_fc2"]
        assert state["wte"].shape == (len(CHARS) + 1, 16) and state["layer0.mlp_fc1"].shape == (64, 16)
        assert model.num_parameters == sum(w.size for w in state.values())
        assert 0.06 < np.std(np.concatenate([w.ravel() for w in state.values()])) < 0.1
        twin = gpt.GPT.from_state(state, CHARS)
        for k, w in twin.state_dict().items():
            np.testing.assert_array_equal(w, state[k])
        X, Y = model.onehots("emma")
        assert twin.tapes(X, Y) == model.tapes(X, Y)
        live = a.live
        with pytest.raises(ValueError, match="rows"):
            gpt.GPT.from_state(state, CHARS[:-1])
        with pytest.raises(ValueError, match="shape"):
            gpt.GPT.from_state(dict(state, lm_head=state["lm_head"][:, :3]), CHARS)
        with pytest.raises(ValueError, match="needs"):
            gpt.GPT.from_state({k: w for k, w in state.items() if k != "layer0.mlp_fc2"}, CHARS)
        with pytest.raises(ValueError, match="vocabulary"):
            model.encode("Emma")
        with pytest.raises(ValueError, match="vocabulary"):
            gpt.train(model, ["emma", "Q"], 2, progress=False)
        with pytest.raises(ValueError, match="multiple"):
            gpt.GPT(CHARS, n_embd=10, n_head=4)
        with pytest.raises(ValueError, match="distinct"):
            gpt.GPT(["a", "a"])
        with pytest.raises(ValueError, match="temperature"):
            gpt.sample(model, 2, temperature=0)
        with pytest.raises(ValueError, match="steps"):
            gpt.train(model, DOCS, 0, progress=False)
        assert a.live == live


@pytest.mark.skipif(not HAVE_NAMES, reason="the shared names file is not on this machine")
def test_command_trains_checkpoints_resumes_and_samples(tmp_path, capsys):
    from crad import cli
    ck = tmp_path / "g.npz"
    common = ["--data-dir", SHARED, "--checkpoint", str(ck), "--samples", "4", "--no-progress"]
    with crad.Arena():
        cli.main(["train", "gpt", "--steps", "40", "--plot", str(tmp_path / "g.png")] + common)
    out = capsys.readouterr().out
    assert "final loss" in out and "nodes per name" in out
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(out.split("samples: ")[1].strip().split(", ")) == 4
    with crad.Arena():  # steps 40..79, from the checkpoint's weights and Adam state
        more = gpt.main(["--steps", "80", "--resume"] + common)
    assert "resumed from" in capsys.readouterr().out and len(more) == 40
    d = np.load(ck)
    assert int(d["step"]) == 80 and int(d["opt/t"]) == 80 and str(d["chars"]) == "abcdefghijklmnopqrstuvwxyz"
    with crad.Arena():
        whole = gpt.main(["--steps", "80", "--checkpoint", ""] + common[:2] + common[4:])
    assert np.isfinite(more).all() and np.mean(whole[-20:]) < np.mean(whole[:20])
    assert np.mean(more[-20:]) < whole[0]


def test_train_refuses_a_string_as_docs():
    """A string is a sequence of one-character names: refused, not trained on."""
    model = gpt.GPT(sorted("abc"), n_embd=4, n_head=1, block_size=4)
    with pytest.raises(ValueError, match="list of names"):
        gpt.train(model, "abc", 1, progress=False)
