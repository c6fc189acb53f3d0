"""Smoke tests of the sequence examples (issue 15): examples/char_lm.py and
examples/seq2seq.py run a few steps at tiny sizes, report finite losses,
sample text from the model's vocabulary, and write checkpoints that a
second run loads and evaluates to the same numbers."""
import importlib.util
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"needle_example_{name}",
                                                  os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_char_lm_runs_reports_and_reloads(tmp_path):
    lm = _load("char_lm")
    ids = np.array([0, 0, 1, 2, 2, 2, 2, 3], np.int32)
    p = np.array([2, 1, 4, 1]) / 8
    np.testing.assert_allclose(lm.unigram_entropy(ids, 5), -(p * np.log(p)).sum())
    path = tmp_path / "lm.npz"
    r = lm.main(model="lstm", max_train=6000, max_valid=2000, batch_size=4, bptt=8,
                embedding_size=8, hidden_size=16, max_steps=6, n_sample=12, verbose=False,
                save=str(path))
    assert np.isfinite(r["valid"]) and 0 < r["entropy"] < np.log(97)
    assert r["ratio"] == r["valid"] / r["entropy"]
    assert len(r["sample"]) == 12 and len(r["history"]["loss"]) == 1
    _, valid_ids, vocab = lm.load_text(1, 2000)
    again = lm.build("lstm", len(vocab), 8, 16, 1, 8)
    again.load(str(path))
    assert lm.evaluate(again, lm.columns(valid_ids, 4), 8) == r["valid"]


def test_seq2seq_data_runs_and_reloads(tmp_path):
    s2s = _load("seq2seq")
    src, tgt_in, tgt_out = s2s.encode([(4, 0, 7), (1, 2, 3, 9)], 5)
    np.testing.assert_array_equal(src[:, 1], [4, 5, 6, 12, 0])
    np.testing.assert_array_equal(tgt_in[:, 1], [s2s.BOS, 12, 6, 5, 4, 0])
    np.testing.assert_array_equal(tgt_out[:, 0], [10, 3, 7, s2s.EOS, 0, 0])
    assert s2s.decoded(tgt_out) == [(7, 0, 4), (9, 3, 2, 1)]
    path = tmp_path / "s2s.npz"
    r = s2s.main(steps=4, batch_size=8, max_len=4, cell="gru", embedding_size=8,
                 hidden_size=16, n_test=20, beam_size=2, eval_every=2, verbose=False,
                 save=str(path))
    assert len(r["history"]["loss"]) == 2 and all(np.isfinite(r["history"]["loss"]))
    assert 0 <= r["greedy"] <= 1 and 0 <= r["beam"] <= 1
    g, b = s2s.evaluate(str(path), "gru", 8, 16, 1, max_len=4, n_test=20, beam_size=2)
    assert (g, b) == (r["greedy"], r["beam"])
