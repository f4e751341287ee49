"""The text2image train step: 8 devices give the 1-device result, and the frozen text encoder stays
outside the train state (its features arrive as batch data, cached per caption)."""
import warnings

import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.data import captions as captions_lib
from jaxgen.data import shapes
from jaxgen.nn.text import TruncationWarning
from jaxgen.tasks.text_encoder import TextEncoder
from jaxgen.train import loop


def test_sr_train_step_on_8_devices_equals_1_device(run_steps):
    # The SR stage draws the most per-example randomness (step, noise, text drop, augmentation level
    # and noise): all of it must come from the examples' global keys, not from the device split.
    # (The quick config drops the text for half the examples, and has no attention: the smallest
    # program that still draws all of it; its 8-device step is the one tests/tasks/test_text2image.py
    # trains.)
    config = config_lib.load("text2image_shapes_sr:quick")
    assert config.model.cond_drop_prob == 0.5
    one, m1 = run_steps(config, jax.devices()[:1])
    eight, m8 = run_steps(config, jax.devices())
    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_encoders_of_one_checkpoint_share_a_cache_and_each_says_a_truncation_once():
    """Two encoders of the same checkpoint and length share the loaded model and the features (the
    second encodes nothing again); each still warns once about an over-long text it is given; an
    unshared encoder computes the same features afresh."""
    short, long = "nine teal kites by a zebra", " and ".join(["a teal kite by a zebra"] * 6)  # texts no other test uses
    first = TextEncoder("minilm", 16)
    with pytest.warns(TruncationWarning, match="truncated to 14"):
        a = first([short, long])
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        assert np.array_equal(first([long])["context"], a["context"][1:])  # said once per encoder
    second = TextEncoder("minilm", 16)
    assert short in second and long in second and "ten teal kites" not in second
    assert second._encoder is first._encoder  # one loaded model, one compiled program
    with pytest.warns(TruncationWarning, match="truncated to 14"):
        b = second([long, short])
    fresh = TextEncoder("minilm", 16, share=False)
    assert short not in fresh and fresh._encoder is not first._encoder
    with pytest.warns(TruncationWarning):
        c = fresh([long, short])
    for k in ("context", "context_mask", "pooled"):
        np.testing.assert_array_equal(b[k], a[k][::-1], err_msg=k)
        np.testing.assert_array_equal(c[k], b[k], err_msg=k)
    assert short not in TextEncoder("minilm", 20)  # another length: its own cache


def test_text_encoder_is_frozen_outside_the_train_state():
    config = config_lib.load("text2image_shapes:quick")
    task = loop.make_task(config)
    state = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    assert count < 1_000_000 < 22_000_000 < task.text.num_params  # MiniLM's 22.7 M are not in the state
    assert not any("word_embeddings" in jax.tree_util.keystr(p) for p, _ in
                   jax.tree_util.tree_flatten_with_path(state)[0])
    # The features arrive as batch data, cached once per distinct caption: every training caption
    # of every configured style (full, position and relation) is encoded before the first step...
    batch = task.host_batch(0)
    assert batch["context"].shape == (16, 20, 384) and batch["pooled"].shape == (16, 384)
    assert task.styles == ("full", "position", "relation")
    captions = {t for style in task.styles for t in task.dataset.arrays[shapes.CAPTION_KEYS[style]].tolist()}
    assert all(t in task.text for t in captions)
    # ...and gives the features the batch's captions (one style drawn per example) get when encoded
    # on their own.
    keys = [shapes.CAPTION_KEYS[style] for style in task.styles]
    rows = task.dataset.batch(config.seed, 0, 16, keys=keys)
    texts = [str(x) for x in captions_lib.drawn_captions(rows, keys, config.seed, 0, 16)]
    full = set(task.dataset.arrays["caption"].tolist())
    assert {t in full for t in texts} == {True, False}  # both styles occur in the batch
    alone = TextEncoder(config.model.text_encoder, config.model.max_text_length, share=False)(texts)
    for k in ("context", "context_mask", "pooled"):
        np.testing.assert_array_equal(alone[k], batch[k], err_msg=k)
    again = task.host_batch(0)
    np.testing.assert_array_equal(again["context"], batch["context"])
    np.testing.assert_allclose(np.linalg.norm(batch["pooled"], axis=1), 1.0, rtol=1e-5)
