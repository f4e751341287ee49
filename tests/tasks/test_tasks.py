"""Every task's real train step: 8 devices give the same step as 1 device on the same global batch."""
import jax
import numpy as np
import pytest

from jaxgen import config as config_lib
from jaxgen.tasks.segmentation import iou_per_class


@pytest.mark.parametrize("name, mode", [("vae_digits", "shard_map"), ("vae_digits", "pmap"),
                                        ("classifier_digits", "shard_map"),
                                        ("diffusion_digits_class", "shard_map")])
def test_eight_devices_equal_one_device(name, mode, run_steps):
    config = config_lib.load(f"{name}:quick")
    one, m1 = run_steps(config, jax.devices()[:1], "shard_map")
    eight, m8 = run_steps(config, jax.devices(), mode)
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_iou_per_class_by_hand():
    true = np.array([[[0, 1], [2, 2]]])
    pred = np.array([[[0, 1], [1, 2]]])
    # class 0: 1/1; class 1: inter 1, union 2; class 2: inter 1, union 2; class 3: absent -> 0/1
    np.testing.assert_allclose(iou_per_class(pred, true), [1.0, 0.5, 0.5, 0.0])
