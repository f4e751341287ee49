"""LoRA as a params transform (jaxgen.nn.lora): selection, merge, the unmerged forward it equals,
gradients that reach only the adapters, saving alone, and the size of the adapters of a real model."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.nn import lora


def _params(seed: int = 0) -> dict:
    """A small params tree with every kind of leaf: Dense, attention projection, conv, embedding, biases."""
    r = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(r.normal(size=shape), jnp.float32)  # noqa: E731
    return {"label_embedding": {"embedding": f(11, 6)},
            "block": {"Dense_0": {"kernel": f(5, 6), "bias": f(6)},
                      "Conv_0": {"kernel": f(3, 3, 2, 4), "bias": f(4)},
                      "attn": {"query": {"kernel": f(6, 6), "bias": f(6)}}},
            "norm": {"scale": f(6)}}


def _with_b(adapters, seed=1):
    """The adapters with a non-zero B (as after training)."""
    r = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(r.normal(size=x.shape), x.dtype) if lora.path_str(p).endswith("b") else x, adapters)


@pytest.mark.parametrize("targets, expected", [
    ("dense", ["block/Dense_0/kernel", "block/attn/query/kernel"]),
    ("attention", ["block/attn/query/kernel"]),
    ("conv", ["block/Conv_0/kernel"]),
    ("dense,conv,embedding", ["block/Conv_0/kernel", "block/Dense_0/kernel", "block/attn/query/kernel",
                              "label_embedding/embedding"]),
    (r"Conv_\d|bias", ["block/Conv_0/kernel"]),  # a regex over paths; biases have no low-rank form
    (lambda path, shape: shape == (5, 6), ["block/Dense_0/kernel"]),
])
def test_targets_select_kernels_by_preset_regex_or_predicate(targets, expected):
    assert lora.select(_params(), targets) == expected


def test_targets_that_select_nothing_or_do_not_parse_are_one_sentence():
    with pytest.raises(ValueError, match=r"select no kernel of these params"):
        lora.select(_params(), "nothing_here")
    with pytest.raises(ValueError, match=r"neither preset names .* nor a valid regular expression"):
        lora.select(_params(), "dense(")


def test_init_gives_a_gaussian_and_a_zero_factor_per_kernel_and_merges_to_the_base_bit_for_bit():
    params = _params()
    adapters = lora.init_adapters(params, jax.random.PRNGKey(0), rank=2, targets="dense,conv,embedding")
    a, b = lora.pairs(adapters)["block/Conv_0/kernel"]
    assert a.shape == (3 * 3 * 2, 2) and b.shape == (2, 4) and not np.any(b)
    assert lora.num_params(adapters) == 2 * ((18 + 4) + (5 + 6) + (6 + 6) + (11 + 6))
    merged = lora.merge(params, adapters, lora.scale(4.0, 2))
    assert jax.tree.structure(merged) == jax.tree.structure(params)
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(merged)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_merge_adds_the_scaled_product_reshaped_to_the_kernel():
    params = _params()
    adapters = _with_b(lora.init_adapters(params, jax.random.PRNGKey(0), rank=3, targets="dense,conv"))
    s = lora.scale(6.0, 3)
    merged = lora.merge(params, adapters, s)
    for path, (a, b) in lora.pairs(adapters).items():
        w = np.asarray(lora.leaves_by_path(params)[path], np.float64)
        expected = w + s * (np.asarray(a, np.float64) @ np.asarray(b, np.float64)).reshape(w.shape)
        np.testing.assert_allclose(lora.leaves_by_path(merged)[path], expected, rtol=1e-5, atol=1e-5)
    # leaves without an adapter are passed through as they are
    assert merged["block"]["Dense_0"]["bias"] is params["block"]["Dense_0"]["bias"]


def test_the_merged_model_computes_the_papers_unmerged_forward():
    """x W' = x W + s (x A) B for a Dense layer, and for a conv: the base conv plus a conv to r
    channels (A as a [kh, kw, cin, r] kernel) followed by a 1x1 conv with B (the im2col view)."""
    params = _params()
    adapters = _with_b(lora.init_adapters(params, jax.random.PRNGKey(3), rank=2, targets="dense,conv"))
    s = lora.scale(4.0, 2)
    merged = lora.merge(params, adapters, s)

    dense, conv = nn.Dense(6), nn.Conv(4, (3, 3), padding="SAME")
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 5))
    a, b = lora.pairs(adapters)["block/Dense_0/kernel"]
    base_out = dense.apply({"params": params["block"]["Dense_0"]}, x)
    np.testing.assert_allclose(dense.apply({"params": merged["block"]["Dense_0"]}, x),
                               base_out + s * (x @ a) @ b, rtol=1e-5, atol=1e-5)

    img = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 2))
    a, b = lora.pairs(adapters)["block/Conv_0/kernel"]
    down = nn.Conv(2, (3, 3), padding="SAME", use_bias=False).apply({"params": {"kernel": a.reshape(3, 3, 2, 2)}}, img)
    base_out = conv.apply({"params": params["block"]["Conv_0"]}, img)
    np.testing.assert_allclose(conv.apply({"params": merged["block"]["Conv_0"]}, img),
                               base_out + s * down @ b, rtol=1e-4, atol=1e-4)


def test_adapter_gradients_are_the_chain_rule_through_merge_and_leave_the_base_alone():
    params = _params()
    adapters = _with_b(lora.init_adapters(params, jax.random.PRNGKey(0), rank=2, targets="dense"))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 5))

    def loss(p, inputs):
        h = jnp.tanh(inputs @ p["block"]["Dense_0"]["kernel"] + p["block"]["Dense_0"]["bias"])
        return jnp.sum((h @ p["block"]["attn"]["query"]["kernel"]) ** 2)

    def grad_fn(p, inputs):  # jaxgen's loss_and_grads convention: (grads, metrics, rows)
        value, grads = jax.value_and_grad(loss)(p, inputs)
        return grads, {"loss": value}, None

    s = lora.scale(2.0, 2)
    grads, metrics, _ = jax.jit(lora.adapter_grad_fn(grad_fn, params, s))(adapters, x)
    direct = jax.grad(lambda ad: loss(lora.merge(params, ad, s), x))(adapters)
    assert jax.tree.structure(grads) == jax.tree.structure(adapters)
    for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direct)):
        np.testing.assert_allclose(g, d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], loss(lora.merge(params, adapters, s), x), rtol=1e-6)


def test_adapters_that_do_not_fit_raise_one_sentence():
    params = _params()
    adapters = lora.init_adapters(params, jax.random.PRNGKey(0), rank=2, targets="dense")
    other = {"block": {"Dense_0": {"kernel": jnp.zeros((5, 8))}}}
    with pytest.raises(lora.AdapterMismatchError, match=r"^LoRA adapters do not fit these params: "
                                                        r"block/Dense_0/kernel is \[5, 8\] here, but its adapter is "
                                                        r"A \[5, 2\] @ B \[2, 6\] .*\)\.$"):
        lora.merge({**params, **other}, adapters, 1.0)
    with pytest.raises(ValueError, match=r"the params have no block/attn/query/kernel \(the adapters were made "
                                         r"for another model\)\.$"):
        lora.check_fits({"block": {"Dense_0": params["block"]["Dense_0"]}}, adapters)


def test_save_and_load_round_trip_the_adapters_alone_with_their_meta(tmp_path):
    params = _params()
    adapters = _with_b(lora.init_adapters(params, jax.random.PRNGKey(0), rank=2, targets="dense,conv"))
    base = {"fingerprint": lora.fingerprint(params), "init_from": "runs/base", "step": 100}
    folder = str(tmp_path / "adapters")
    lora.save(folder, adapters, alpha=4.0, targets="dense,conv", info={"base": base})
    lora.save(folder, adapters, alpha=4.0, targets="dense,conv", info={"base": base})  # replaces in place
    assert sorted(os.listdir(tmp_path)) == ["adapters"]
    loaded, meta = lora.load(folder, base=params)
    assert jax.tree.structure(loaded) == jax.tree.structure(adapters)
    for x, y in zip(jax.tree.leaves(adapters), jax.tree.leaves(loaded)):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert (meta["rank"], meta["alpha"], meta["targets"]) == (2, 4.0, "dense,conv")
    assert meta["num_params"] == lora.num_params(adapters) and meta["base"] == base
    np.testing.assert_array_equal(lora.merge(params, loaded, lora.scale(meta["alpha"], meta["rank"]))["block"]["Conv_0"]
                                  ["kernel"], lora.merge(params, adapters, 2.0)["block"]["Conv_0"]["kernel"])

    other_base = _params(seed=5)  # the same shapes, other numbers: not the base they were trained on
    with pytest.raises(lora.AdapterMismatchError, match=r"were trained on base [0-9a-f]{12} \(runs/base\), "
                                                        r"not on these params"):
        lora.load(folder, base=other_base)
    lora.load(folder, base=other_base, same_base=False)

    with open(os.path.join(folder, lora.ADAPTERS_FILE), "r+b") as f:  # a damaged file is refused
        f.seek(-1, os.SEEK_END)
        f.write(b"\x00")
    with pytest.raises(ValueError, match="does not match the sha256"):
        lora.load(folder)


def test_fingerprint_depends_on_the_numbers_not_on_how_the_tree_was_built():
    params = _params()
    reordered = {k: params[k] for k in reversed(list(params))}
    assert lora.fingerprint(params) == lora.fingerprint(jax.device_get(reordered))
    changed = jax.tree.map(lambda x: x, params)
    changed["norm"]["scale"] = changed["norm"]["scale"].at[0].add(1e-6)
    assert lora.fingerprint(changed) != lora.fingerprint(params)


def test_rank_4_dense_adapters_of_the_class_conditional_digits_unet_are_under_5_percent():
    """The issue's budget on a real model, from shapes alone (jax.eval_shape: no init, no training):
    the optimizer state holds adapter leaves only, the base is frozen beside it."""
    from jaxgen import config as config_lib
    from jaxgen.train import loop
    from jaxgen.train.state import LoraState

    config = config_lib.load("diffusion_digits_class", ["--config.lora.rank=4", "--config.lora.init_from=unused"])
    task = loop.make_task(config)
    state = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    assert isinstance(state, LoraState)
    model, trained = lora.num_params(state.base_params), lora.num_params(state.params)
    assert trained <= 0.05 * model, (trained, model)
    assert lora.select(state.base_params, "dense") == sorted(lora.pairs(state.params))
    # Adam's two moments over the adapters (besides scalar step counts), the EMA over the adapters only.
    moments = [x for x in jax.tree.leaves(state.opt_state) if x.ndim]
    assert sum(x.size for x in moments) == 2 * trained
    assert lora.num_params(state.ema_params) == trained
