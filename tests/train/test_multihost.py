"""A real multi-process run on this machine: 2 processes x 2 fake CPU devices joined through
jax.distributed over loopback (gloo collectives, a free port, a hard timeout) train like
1 process x 4 devices, and their checkpoints restore in either direction."""
import os
import signal
import time

import jax
import numpy as np
import pytest

from experiments.launch.local import LocalRun
from jaxgen import config as config_lib
from jaxgen.train import distributed, log, loop, parallel
from jaxgen.train.checkpoint import Checkpointer, abstract_state

TIMEOUT = 240  # seconds for a whole 2-process run; killed (and failed) after that


def _overrides(steps):
    return [f"--config.train.steps={steps}", "--config.train.log_every=1", "--config.train.ckpt_every=3",
            "--config.train.sample_every=0"]


def _two_by_two(name, workdir, overrides):
    run = LocalRun(["train", f"{name}:quick", "--workdir", workdir, "--quiet", *overrides],
                   num_processes=2, devices_per_process=2)
    codes = run.wait(timeout=TIMEOUT)
    assert codes == [0, 0], f"exit statuses {codes}\n--- process 0:\n{run.output(0)[-3000:]}\n" \
                            f"--- process 1:\n{run.output(1)[-3000:]}"
    return run.output(0), run.output(1)


def _restore_on(workdir, config, devices, step=None):
    """Checkpoint `step` (default: the newest) of `workdir`, replicated over `devices` of this process."""
    task = loop.make_task(config)
    sharding = jax.sharding.NamedSharding(parallel.make_mesh(devices), jax.sharding.PartitionSpec())
    target = abstract_state(jax.eval_shape(task.init, jax.random.PRNGKey(config.seed)), sharding)
    ckpt = Checkpointer(workdir)
    state = ckpt.restore(target, step)
    ckpt.close()
    return state


def _assert_close(a_state, b_state):
    # The same global batch, per-example keys and schedule; only the order in which gloo and XLA sum
    # the gradients of the 4 devices may differ, by float rounding.
    for a, b in zip(jax.tree.leaves(a_state), jax.tree.leaves(b_state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_vae_two_processes_resume_a_one_process_checkpoint_and_end_like_four_devices(tmp_path):
    overrides = _overrides(6)
    config = config_lib.load("vae_digits:quick", overrides)
    four = jax.devices()[:4]
    reference = loop.train(config, str(tmp_path / "reference"), devices=four, quiet=True)
    workdir = str(tmp_path / "shared")
    loop.train(config, workdir, devices=four, quiet=True, stop_at=3)  # written by 1 process x 4 devices

    out0, out1 = _two_by_two("vae_digits", workdir, overrides)  # both processes restore it, train 3..6
    assert "joined a 2-process run" in out0 and f"resumed from step 3 ({workdir}" in out0
    assert "resumed" not in out1 and "joined" not in out1  # only process 0 prints
    assert Checkpointer(workdir).all_steps() == [3, 6]

    restored = _restore_on(workdir, config, four)  # written by 2 processes, read by 1
    assert int(restored.step) == 6
    _assert_close(reference.state, restored)
    losses = {r["step"]: r["loss"] for r in log.read_metrics(workdir)}
    reference_losses = {r["step"]: r["loss"] for r in log.read_metrics(str(tmp_path / "reference"))}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([losses[s] for s in (4, 5, 6)], [reference_losses[s] for s in (4, 5, 6)],
                               rtol=1e-6)


@pytest.mark.slow
def test_classifier_equals_four_devices_and_a_sigterm_to_one_process_stops_both_at_one_step(tmp_path):
    # Dropout and random shifts draw per-example keys from the example's global index, so the two
    # processes' rows must see the same noise as on one process: compared at the step-4 checkpoint.
    # Then SIGTERM reaches only process 1 (a preemption notice): both must save at the same step
    # and exit 0.
    # SGD, not the config's Adam: gloo and XLA sum the 4 devices' gradients in different orders, and
    # Adam's per-element normalisation (m / sqrt(v)) turns that rounding, in the rare element whose
    # gradient nearly cancels, into an update difference of order lr (measured: 1 element in 131072
    # off by 1.8e-6 after 4 steps). SGD keeps the difference at rounding size, so the tight tolerance
    # still catches any real mismatch (wrong rows, wrong keys: every element off).
    overrides = ["--config.train.steps=100000", "--config.train.log_every=1", "--config.train.ckpt_every=4",
                 "--config.train.keep=1000", "--config.train.sample_every=0", "--config.optim.name=sgd"]
    workdir = str(tmp_path / "two")
    run = LocalRun(["train", "classifier_digits:quick", "--workdir", workdir, "--quiet", *overrides],
                   num_processes=2, devices_per_process=2)
    start = time.time()
    while len(log.read_metrics(workdir)) < 5 and time.time() - start < TIMEOUT and run.procs[0].poll() is None:
        time.sleep(0.02)
    run.send_signal(signal.SIGTERM, [1])
    codes = run.wait(timeout=TIMEOUT)
    out = run.output(0)
    assert codes == [0, 0], f"{codes}\n{out[-3000:]}\n{run.output(1)[-3000:]}"
    lines = [ln for ln in out.splitlines() if ln.startswith("preempted at step ")]
    assert len(lines) == 1 and not any("preempted" in ln for ln in run.outputs[1]), out
    step = int(lines[0].split()[3].rstrip(";"))
    assert step > 4 and Checkpointer(workdir).all_steps() == sorted({*range(4, step, 4), step})

    config = config_lib.load("classifier_digits:quick", overrides)
    reference = loop.train(config, str(tmp_path / "reference"), devices=jax.devices()[:4], quiet=True, stop_at=4)
    restored = _restore_on(workdir, config, jax.devices()[:4], step=4)
    assert int(restored.step) == 4
    _assert_close(reference.state, restored)
    assert int(_restore_on(workdir, config, jax.devices()[:4]).step) == step  # the preemption checkpoint


@pytest.mark.parametrize("kwargs, env, message", [
    (dict(coordinator="localhost"), {}, "--coordinator must look like HOST:PORT"),
    (dict(coordinator="h:99999", num_processes=2, process_id=0), {}, "must look like HOST:PORT"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), {}, r"--process_id must be in 0\.\.1, not 2"),
    (dict(coordinator="h:1", num_processes="two", process_id=0), {}, "--num_processes must be an integer"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), {}, "--num_processes must be at least 1"),
    (dict(coordinator="h:1"), {}, "--coordinator given without --num_processes .* and --process_id"),
    ({}, {"JAXGEN_COORDINATOR": "h:1", "JAXGEN_NUM_PROCESSES": "2"}, "JAXGEN_COORDINATOR, JAXGEN_NUM_PROCESSES given "
                                                                      "without --process_id"),
    ({}, {"JAXGEN_COORDINATOR": "h:1", "JAXGEN_NUM_PROCESSES": "2", "JAXGEN_PROCESS_ID": "-1"},
     r"JAXGEN_PROCESS_ID must be in 0\.\.1"),
    (dict(mode="sometimes"), {}, "--distributed must be one of auto, off"),
    (dict(mode="off", coordinator="h:1"), {}, "--distributed off contradicts --coordinator"),
])
def test_bad_distributed_settings_are_one_sentence(kwargs, env, message):
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.resolve(**kwargs, environ=env)


def test_distributed_settings_come_from_flags_then_environment():
    env = {"JAXGEN_COORDINATOR": "10.0.0.1:1234", "JAXGEN_NUM_PROCESSES": "4", "JAXGEN_PROCESS_ID": "3"}
    assert distributed.resolve(environ={}) == distributed.Spec("off")
    assert distributed.resolve(environ=env) == distributed.Spec("explicit", "10.0.0.1:1234", 4, 3)
    assert distributed.resolve(process_id="1", environ=env) == distributed.Spec("explicit", "10.0.0.1:1234", 4, 1)
    assert distributed.resolve(mode="off", environ=env) == distributed.Spec("off")
    assert distributed.resolve(mode="auto", environ={}) == distributed.Spec("auto")
    assert distributed.resolve(environ={"JAXGEN_DISTRIBUTED": "auto", "JAXGEN_PROCESS_ID": "2"}) == \
        distributed.Spec("auto", None, None, 2)
    assert distributed.resolve(coordinator="[::1]:80", num_processes=1, process_id=0, environ={}).mode == "explicit"


def test_cli_rejects_a_bad_process_id_before_starting(tmp_path, capsys):
    from jaxgen import cli

    code = cli.main(["train", "vae_digits:quick", "--workdir", str(tmp_path / "run"), "--coordinator", "127.0.0.1:1",
                     "--num_processes", "2", "--process_id", "5"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "jaxgen: error: --process_id must be in 0..1, not 5."
    assert not os.path.exists(tmp_path / "run")
