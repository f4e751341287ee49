"""The fixture that runs a task's real train step on a chosen set of devices."""
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


@pytest.fixture
def run_steps():
    return _run_steps
