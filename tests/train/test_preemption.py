"""Crashes and preemptions: half-written checkpoints are ignored and cleaned, SIGTERM saves at an
agreed step boundary and exits 0, and the resumed run is bitwise equal to an uninterrupted one."""
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.launch.local import xla_flags_with_devices
from jaxgen import config as config_lib
from jaxgen.train import log, loop
from jaxgen.train.checkpoint import MANIFEST, Checkpointer, incomplete_checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _vae(*overrides):
    return config_lib.load("vae_digits:quick", ["--config.train.sample_every=0", *overrides])


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _largest_file(step_dir):
    files = [os.path.join(r, n) for r, _, ns in os.walk(step_dir) for n in ns if n != MANIFEST]
    return max(files, key=os.path.getsize)


def test_half_written_checkpoints_are_removed_and_the_run_resumes_from_the_last_complete(tmp_path, capsys):
    config = _vae("--config.train.steps=6", "--config.train.ckpt_every=2", "--config.train.keep=3")
    devices = jax.devices()[:2]
    reference = loop.train(config, str(tmp_path / "reference"), devices=devices, quiet=True)
    workdir = str(tmp_path / "crashed")
    loop.train(config, workdir, devices=devices, quiet=True)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    assert sorted(os.listdir(ckpt_dir)) == ["2", "4", "6"] and incomplete_checkpoints(ckpt_dir) == []

    # What crashes leave: step 6 with a truncated data file, step 4 missing a file, and an Orbax
    # temporary directory of a save that never finished.
    victim = _largest_file(os.path.join(ckpt_dir, "6"))
    size = os.path.getsize(victim)
    with open(victim, "r+b") as f:
        f.truncate(size // 2)
    os.remove(os.path.join(ckpt_dir, "4", "state", "_METADATA"))
    tmp_dir = os.path.join(ckpt_dir, "8.orbax-checkpoint-tmp-1234")
    shutil.copytree(os.path.join(ckpt_dir, "2", "state"), os.path.join(tmp_dir, "state"))
    problems = dict(incomplete_checkpoints(ckpt_dir))
    truncated = os.path.relpath(victim, os.path.join(ckpt_dir, "6"))
    assert problems == {"4": "state/_METADATA is missing",
                        "6": f"{truncated} has {size // 2} of its {size} bytes",
                        "8.orbax-checkpoint-tmp-1234": "an unfinished save"}

    # A reader skips them without deleting anything (a live run may own them).
    assert Checkpointer(workdir).all_steps() == [2]
    assert sorted(os.listdir(ckpt_dir)) == ["2", "4", "6", "8.orbax-checkpoint-tmp-1234"]

    capsys.readouterr()
    resumed = loop.train(config, workdir, devices=devices, quiet=True)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "resumed" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"resumed from step 2 ({ckpt_dir}); removed incomplete "
                                                   "checkpoint(s) 4 (state/_METADATA is missing), 6 ("), lines
    assert "8.orbax-checkpoint-tmp-1234 (an unfinished save)" in lines[0]
    assert sorted(os.listdir(ckpt_dir)) == ["2", "4", "6"] and incomplete_checkpoints(ckpt_dir) == []
    assert resumed.step == 6
    for a, b in zip(_leaves(reference.state), _leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    # lines logged past step 2 by the first run were dropped: each step is in the log once
    assert [r["step"] for r in log.read_metrics(workdir)] == [2, 4, 5, 6]


def test_checkpoint_without_manifest_is_checked_by_its_orbax_metadata(tmp_path, capsys):
    config = _vae("--config.train.steps=4", "--config.train.ckpt_every=2")
    workdir = str(tmp_path)
    loop.train(config, workdir, devices=jax.devices()[:1], quiet=True)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    for step in ("2", "4"):  # as if written before manifests, or killed right after Orbax's rename
        os.remove(os.path.join(ckpt_dir, step, MANIFEST))
    assert incomplete_checkpoints(ckpt_dir) == []  # complete without a manifest
    with open(os.path.join(ckpt_dir, "4", "_CHECKPOINT_METADATA"), "r+b") as f:
        f.truncate(10)
    assert incomplete_checkpoints(ckpt_dir) == [("4", "_CHECKPOINT_METADATA is truncated or corrupt")]
    capsys.readouterr()
    result = loop.train(config, workdir, devices=jax.devices()[:1], quiet=True, stop_at=3)
    assert "resumed from step 2" in capsys.readouterr().out and result.step == 3
    assert Checkpointer(workdir).all_steps() == [2, 3]


def test_only_incomplete_checkpoints_means_a_fresh_start_that_says_so(tmp_path, capsys):
    ckpt_dir = tmp_path / "checkpoints"
    (ckpt_dir / "5.orbax-checkpoint-tmp-99").mkdir(parents=True)
    (ckpt_dir / "notes.txt").write_text("not a checkpoint: left alone")
    result = loop.train(_vae("--config.train.steps=2"), str(tmp_path), devices=jax.devices()[:1], quiet=True)
    out = capsys.readouterr().out
    assert f"no complete checkpoint in {ckpt_dir}, starting from step 0; removed incomplete checkpoint(s) " \
           "5.orbax-checkpoint-tmp-99 (an unfinished save)" in out
    assert result.step == 2 and sorted(os.listdir(ckpt_dir)) == ["2", "notes.txt"]


def _cli(args):
    # 2 fake devices; the session's other XLA flags (tests/conftest.py) still apply
    env = dict(os.environ, XLA_FLAGS=xla_flags_with_devices(os.environ.get("XLA_FLAGS", ""), 2), JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-m", "jaxgen.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_metrics(workdir, proc, timeout=120):
    """Waits until the run has logged a step (so it is past compilation and mid-run)."""
    start = time.time()
    while not log.read_metrics(workdir):
        if proc.poll() is not None or time.time() - start > timeout:
            raise AssertionError(f"the run logged nothing (status {proc.poll()}):\n{proc.communicate()[0][-3000:]}")
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_saves_at_a_step_boundary_exits_0_and_resumes_bitwise_equal(tmp_path):
    steps = 120
    args = ["train", "vae_digits:quick", "--quiet", f"--config.train.steps={steps}", "--config.train.log_every=5",
            "--config.train.ckpt_every=0", "--config.train.sample_every=0"]
    preempted, reference = str(tmp_path / "preempted"), str(tmp_path / "reference")
    proc = _cli(args + ["--workdir", preempted])
    uninterrupted = _cli(args + ["--workdir", reference])
    _wait_for_metrics(preempted, proc)
    time.sleep(np.random.default_rng().uniform(0.0, 0.3))
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("preempted at step ")]
    assert len(lines) == 1, out
    step = int(lines[0].split()[3].rstrip(";"))
    assert 5 <= step < steps and Checkpointer(preempted).all_steps() == [step]
    assert log.read_metrics(preempted)[-1]["step"] == step  # the steps since the last log point are logged

    resumed = _cli(args + ["--workdir", preempted])
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and f"resumed from step {step}" in out, out
    assert uninterrupted.wait(timeout=300) == 0
    _, _, a = loop.restore_for_eval(preempted)
    _, _, b = loop.restore_for_eval(reference)
    assert int(a.step) == int(b.step) == steps
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(x, y)
