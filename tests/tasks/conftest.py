"""The fixture that runs a task's real train step on a chosen set of devices, and the trained runs
that several test modules share."""
import os

import jax
import pytest

from jaxgen.train import loop, parallel


def _run_steps(config, devices, mode="shard_map", steps=2):
    """`steps` train steps of `config` on `devices` in parallel `mode`: (host state, last metrics)."""
    config.train.parallel = mode
    task, step_fn = loop.setup(config, devices)
    state = step_fn.put_state(loop.init_state(task, config))
    for step in range(steps):
        state, metrics = step_fn(state, step_fn.put_batch(task.host_batch(step)))
        jax.block_until_ready(metrics)  # one step in flight: XLA CPU's fake-device collectives are fragile
    host = jax.device_get(parallel.to_local(step_fn.host_state(state)))
    return host, jax.device_get(step_fn.metrics_to_host(metrics))


@pytest.fixture(scope="session")  # a plain function: module fixtures that share one run use it too
def run_steps():
    return _run_steps


@pytest.fixture(scope="module")
def text2image_sr_run(shared_dir):
    """A 4-step text2image super-resolution stage (16 -> 32, text2image_shapes_sr:quick), trained
    through the CLI once per test run: the SR stage of test_text2image.py's cascade and of
    test_unclip.py's (an unclip base feeds it as a text2image base does)."""
    from jaxgen.cli import main

    def build(path):
        assert main(["train", "text2image_shapes_sr:quick", "--workdir", str(path / "run"), "--quiet"]) == 0
    return os.path.join(shared_dir("text2image_sr", build), "run")
