"""Re-sharding: a checkpoint written on 4 devices restores onto 1, 2 and 8 (Orbax restores with the
target's shardings) and training continues as it would have on 4."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgen import config as config_lib
from jaxgen.train import log, loop, parallel
from jaxgen.train.checkpoint import Checkpointer, abstract_state


def _mesh_sharding(n, spec):
    return NamedSharding(parallel.make_mesh(jax.devices()[:n]), spec)


@pytest.mark.parametrize("n", [1, 2, 8])
def test_arrays_sharded_over_four_devices_restore_onto_n(tmp_path, n):
    config = config_lib.load("vae_digits:quick")
    rows = jnp.arange(8 * 3, dtype=jnp.float32).reshape(8, 3)
    state = {"rows": jax.device_put(rows, _mesh_sharding(4, P("data"))),  # one quarter per device
             "replicated": jax.device_put(jnp.ones((5,), jnp.bfloat16), _mesh_sharding(4, P())),
             "step": jax.device_put(jnp.int32(7), _mesh_sharding(4, P()))}
    ckpt = Checkpointer(str(tmp_path), clean=True)
    ckpt.save(7, state, config)
    ckpt.close()

    shapes = jax.eval_shape(lambda: state)
    target = {"rows": abstract_state(shapes["rows"], _mesh_sharding(n, P("data"))),
              "replicated": abstract_state(shapes["replicated"], _mesh_sharding(n, P())),
              "step": abstract_state(shapes["step"], _mesh_sharding(n, P()))}
    restored = Checkpointer(str(tmp_path)).restore(target, 7)
    for key in state:
        assert restored[key].sharding == target[key].sharding
        assert restored[key].dtype == state[key].dtype
        np.testing.assert_array_equal(np.asarray(restored[key]), np.asarray(state[key]))
    assert len(restored["rows"].addressable_shards) == n
    assert {s.data.shape for s in restored["rows"].addressable_shards} == {(8 // n, 3)}


def test_training_resumed_on_other_device_counts_continues_like_four(tmp_path):
    config = config_lib.load("vae_digits:quick", ["--config.train.steps=6", "--config.train.log_every=1",
                                                  "--config.train.ckpt_every=3", "--config.train.sample_every=0"])
    four = loop.train(config, str(tmp_path / "four"), devices=jax.devices()[:4], quiet=True)
    losses_four = {r["step"]: r["loss"] for r in log.read_metrics(str(tmp_path / "four"))}
    first = str(tmp_path / "first")
    loop.train(config, first, devices=jax.devices()[:4], quiet=True, stop_at=3)
    for n in (1, 2, 8):
        workdir = str(tmp_path / f"on{n}")
        shutil.copytree(first, workdir)
        result = loop.train(config, workdir, devices=jax.devices()[:n], quiet=True)
        assert result.step == 6
        losses = {r["step"]: r["loss"] for r in log.read_metrics(workdir)}
        assert sorted(losses) == [1, 2, 3, 4, 5, 6]
        # The global batch, the per-example noise and the schedule are the same on any device count;
        # only the order in which the gradient mean is summed differs (float rounding).
        np.testing.assert_allclose([losses[s] for s in (4, 5, 6)], [losses_four[s] for s in (4, 5, 6)], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(four.state), jax.tree.leaves(result.state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        assert os.path.isdir(os.path.join(workdir, "checkpoints", "6"))
