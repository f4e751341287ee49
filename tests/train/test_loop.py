"""The generic loop end to end: training, resume (in process and after SIGKILL), signals,
incompatible checkpoints and non-finite losses."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.launch.local import xla_flags_with_devices
from jaxgen import config as config_lib
from jaxgen.tasks.base import TaskError
from jaxgen.train import log, loop, parallel
from jaxgen.train.checkpoint import Checkpointer, CheckpointError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(name="classifier_digits", *overrides):
    return config_lib.load(f"{name}:quick", list(overrides))


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_training_lowers_the_loss_and_writes_the_run(tmp_path):
    config = _config("classifier_digits", "--config.train.steps=60", "--config.train.log_every=10",
                     "--config.train.ckpt_every=30", "--config.train.augment_shift=0", "--config.model.dropout=0.0")
    result = loop.train(config, str(tmp_path), quiet=True)
    assert result.step == 60 and int(result.state.step) == 60
    records = log.read_metrics(str(tmp_path))
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60]
    assert records[-1]["loss"] < 0.6 * records[0]["loss"]
    assert Checkpointer(str(tmp_path)).all_steps() == [30, 60]
    assert os.path.exists(tmp_path / "config.json") and os.listdir(tmp_path / "tb")


def test_resume_equals_uninterrupted_run(tmp_path):
    config = _config("vae_digits", "--config.train.steps=12", "--config.train.sample_every=0")
    full = loop.train(config, str(tmp_path / "full"), quiet=True)
    part = str(tmp_path / "part")
    first = loop.train(config, part, quiet=True, stop_at=7)
    assert first.step == 7 and Checkpointer(part).latest_step() == 7
    resumed = loop.train(config, part, quiet=True)
    for a, b in zip(_leaves(full.state), _leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    # the log of the resumed run has each step once
    steps = [r["step"] for r in log.read_metrics(part)]
    assert steps == sorted(set(steps))


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    loop.train(_config("classifier_digits", "--config.train.steps=10"), str(tmp_path), quiet=True)
    with pytest.raises(CheckpointError, match="written with task = \"classifier\".*this run's task is \"vae\""):
        loop.train(_config("vae_digits"), str(tmp_path), quiet=True)
    with pytest.raises(CheckpointError, match="model"):
        loop.train(_config("classifier_digits", "--config.model.feature_dim=64"), str(tmp_path), quiet=True)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_good_checkpoint(tmp_path):
    config = _config("classifier_digits", "--config.train.steps=40", "--config.train.ckpt_every=10",
                     "--config.train.log_every=10", "--config.optim.lr=1e30", "--config.optim.grad_clip=0.0",
                     "--config.optim.warmup_steps=0", "--config.optim.schedule=constant")
    with pytest.raises(loop.NonFiniteLossError, match=r"loss is (nan|inf) at step \d+; training stopped") as info:
        loop.train(config, str(tmp_path), quiet=True)
    steps = Checkpointer(str(tmp_path)).all_steps()
    bad_step = int(str(info.value).split(" at step ")[1].split(";")[0])
    assert all(s < bad_step for s in steps)


def _cli(args, env_extra=None, **kwargs):
    # 2 fake devices; the session's other XLA flags (tests/conftest.py) still apply
    env = dict(os.environ, XLA_FLAGS=xla_flags_with_devices(os.environ.get("XLA_FLAGS", ""), 2), JAX_PLATFORMS="cpu")
    env.update(env_extra or {})
    return subprocess.Popen([sys.executable, "-m", "jaxgen.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _wait_for_checkpoint(workdir, timeout=120):
    ckpt_dir = os.path.join(workdir, "checkpoints")
    start = time.time()
    while time.time() - start < timeout:
        if os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint appeared in {ckpt_dir} within {timeout} s")


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal(tmp_path):
    args = ["train", "vae_digits:quick", "--quiet", "--config.train.steps=80", "--config.train.ckpt_every=5",
            "--config.train.sample_every=0"]
    killed = str(tmp_path / "killed")
    proc = _cli(args + ["--workdir", killed])
    _wait_for_checkpoint(killed)
    time.sleep(np.random.default_rng().uniform(0.0, 1.0))  # a random moment, possibly mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    reference = str(tmp_path / "reference")
    outputs = [_cli(args + ["--workdir", w]).communicate(timeout=300)[0] for w in (killed, reference)]
    assert "resumed from step" in outputs[0] and "resumed" not in outputs[1], outputs
    _, _, a = loop.restore_for_eval(killed)
    _, _, b = loop.restore_for_eval(reference)
    assert int(a.step) == int(b.step) == 80
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130(tmp_path):
    workdir = str(tmp_path)
    proc = _cli(["train", "classifier_digits:quick", "--workdir", workdir, "--quiet",
                 "--config.train.steps=100000", "--config.train.ckpt_every=0"])
    while not os.path.exists(os.path.join(workdir, "config.json")):
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "interrupted at step" in out
    step = int(out.split("interrupted at step ")[1].split(";")[0])
    assert Checkpointer(workdir).all_steps() == [step]


def test_stop_flag_codes_and_a_second_ctrl_c_interrupts_at_once():
    # Start from Python's own SIGINT handler, as a CLI process does: a pytest worker's handler may
    # have been replaced by whatever ran in it before (this test failed once that way in a full run).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with loop._StopFlag() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # repeated notices keep waiting for the save
            assert loop._STOP_CODES[stop.code] == "SIGTERM"
        with loop._StopFlag() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert loop._STOP_CODES[stop.code] == "SIGINT"
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)  # the handler runs between bytecodes; never reached
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)


def _stop_test_step(state, batch):
    return state + parallel.pmean(batch["x"].sum()), {"loss": state}


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_the_step_passes_this_process_stop_code_through(mode):
    """One process: every device gets the code the host passes (parallel.DataParallel._stop_input),
    and the step hands it back (the loop reads it after every step to decide to stop)."""
    dp = parallel.DataParallel(_stop_test_step, parallel.make_mesh(jax.devices()[:4]), mode, donate=False)
    state = dp.put_state(np.float32(0.0))
    batch = dp.put_batch({"x": np.ones((8,), np.float32)})
    for code in (0, 2, 1):
        _, _, agreed = dp.step(state, batch, code)
        assert int(jax.device_get(agreed)) == code
    new_state, metrics = dp(state, batch)  # the plain call is the same step without the code
    assert float(jax.device_get(dp.metrics_to_host(metrics))["loss"]) == 0.0


@pytest.mark.multidevice
def test_the_multi_process_step_returns_the_largest_stop_code_of_all_devices(monkeypatch):
    """Processes see a signal at different moments, so their devices hold different codes; every
    process must read the largest (the pmax fused into the step). The program a multi-process run
    compiles is built here on 4 fake devices of this one process (DataParallel reads
    jax.process_count() when it builds the step), and fed a different code per device. Without the
    pmax each device would return its own code, and the replicated output would be one device's:
    the two layouts put the largest code on different devices, so no single device's own code
    passes both."""
    with monkeypatch.context() as m:
        m.setattr(jax, "process_count", lambda: 2)
        dp = parallel.DataParallel(_stop_test_step, parallel.make_mesh(jax.devices()[:4]), "shard_map",
                                   donate=False)
    state = dp.put_state(np.float32(0.0))
    batch = dp.put_batch({"x": np.ones((8,), np.float32)})
    for codes in ((0, 2, 1, 0), (1, 0, 0, 2), (0, 0, 0, 0)):
        stop = jax.device_put(np.asarray(codes, np.int32), dp.batch_sharding)  # one code per device
        new_state, metrics, agreed = dp._step(state, batch, stop)
        assert int(jax.device_get(agreed)) == max(codes), codes
    assert float(jax.device_get(new_state)) == 2.0  # the step itself ran: each device's 2 ones, averaged


def _tree(path):
    """{relative path: bytes} of every file under `path` ({} when it does not exist), and its folders."""
    files, folders = {}, set()
    for root, dirs, names in os.walk(path):
        folders.update(os.path.relpath(os.path.join(root, d), path) for d in dirs)
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, path)] = f.read()
    return files, folders


def test_resume_refuses_other_data_or_model_before_writing_and_extends_with_more_steps(tmp_path):
    workdir = str(tmp_path / "run")
    base = ("--config.train.steps=4", "--config.train.ckpt_every=4", "--config.train.sample_every=0")
    loop.train(_config("vae_digits", *base), workdir, quiet=True)
    before = _tree(workdir)
    with pytest.raises(CheckpointError, match="written with data.split = \"train\", but this run's data.split is "
                                              "\"test\".*train.\\* may change"):
        loop.train(_config("vae_digits", *base, "--config.data.split=test"), workdir, quiet=True)
    with pytest.raises(CheckpointError,
                       match="written with model.latent_dim = 8, but this run's model.latent_dim is 4"):
        loop.train(_config("vae_digits", *base, "--config.model.latent_dim=4"), workdir, quiet=True)
    assert _tree(workdir) == before  # config.json, metrics, tb/ and checkpoints untouched
    # Where the data is cached is not part of the run; train.* may change: more steps extend it.
    extended = loop.train(_config("vae_digits", *base, "--config.train.steps=6", "--config.train.ckpt_every=2",
                                  "--config.data.data_dir=" + os.environ["JAXGEN_DATA_DIR"]), workdir, quiet=True)
    assert extended.step == 6 and Checkpointer(workdir).all_steps()[-1] == 6


@pytest.mark.parametrize("override, error", [
    ("--config.train.grad_accum=8", config_lib.ConfigError),  # 32 examples over 8 devices: 4 per device
    ("--config.model.channels=()", TaskError),
])
def test_bad_settings_stop_before_the_run_folder_exists(tmp_path, override, error):
    workdir = tmp_path / "run"
    with pytest.raises(error):
        loop.train(_config("vae_digits", override), str(workdir), quiet=True)
    assert not workdir.exists()


def test_readers_create_nothing(tmp_path):
    config = _config("vae_digits")
    (tmp_path / "config.json").write_text(config_lib.to_json(config))
    reader = Checkpointer(str(tmp_path))
    assert reader.latest_step() is None and reader.all_steps() == []
    reader.close()
    with pytest.raises(CheckpointError, match="has no checkpoint yet"):
        loop.restore_for_eval(str(tmp_path))
    assert os.listdir(tmp_path) == ["config.json"]
