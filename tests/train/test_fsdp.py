"""train.sharding='fsdp': params, optimizer state and EMA split over 8 fake CPU devices hold 1/8 of
the replicated bytes per device (plus the leaves no dimension of which divides), train to the
replicated run's numbers, their checkpoints restore in either layout on 1, 2 and 8 devices, and a
2-process run (loopback, as tests/train/test_multihost.py) resumes one; tasks with their own step refuse."""
import os
import shutil

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from experiments.launch.local import LocalRun
from jaxgen import config as config_lib
from jaxgen.tasks.base import TaskError
from jaxgen.train import log, loop, parallel
from jaxgen.train.checkpoint import Checkpointer, abstract_state

EIGHT = 8
# A few steps of a small run; log and save every 2 steps, no sample grids.
SHORT = ["--config.train.steps=4", "--config.train.log_every=1", "--config.train.ckpt_every=2",
         "--config.train.sample_every=0"]


def _config(name, sharding, *overrides):
    return config_lib.load(f"{name}:quick", [f"--config.train.sharding={sharding}", *overrides])


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_the_rule_splits_the_largest_dimension_that_divides_and_replicates_the_rest():
    assert parallel.fsdp_spec((3, 3, 16, 32), 8) == P(None, None, None, "data")  # a conv kernel: Cout
    assert parallel.fsdp_spec((32, 10), 8) == P("data")  # a dense kernel whose outputs 8 does not divide
    assert parallel.fsdp_spec((64, 64), 8) == P("data")  # ties: the first (major) dimension, contiguous shards
    assert parallel.fsdp_spec((24, 40), 8) == P(None, "data")
    for unsplittable in [(), (2,), (10,), (4, 4), (3, 5, 7)]:  # step, rng, a 10-class bias, too small, odd
        assert parallel.fsdp_spec(unsplittable, 8) == P()
    assert parallel.fsdp_spec((64, 64), 1) == P()  # one device: nothing to split

    mesh = parallel.make_mesh(jax.devices()[:EIGHT])
    shapes = {"kernel": jax.ShapeDtypeStruct((16, 32), np.float32), "step": jax.ShapeDtypeStruct((), np.int32),
              "none": None}
    shardings = parallel.fsdp_sharding(shapes, mesh)
    assert shardings["kernel"].spec == P(None, "data") and shardings["step"].spec == P()
    assert shardings["none"] is None
    assert parallel.bytes_per_device(shapes, shardings) == 16 * 32 * 4 // 8 + 4


@pytest.mark.multidevice
def test_eight_devices_hold_an_eighth_of_the_state_plus_what_cannot_be_split():
    config = _config("classifier_digits", "fsdp", "--config.train.ema_decay=0.9")
    task, step_fn = loop.setup(config, jax.devices()[:EIGHT])
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
    state = step_fn.put_state(loop.init_state(task, config))
    replicated = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    unsplittable = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes) if parallel.fsdp_spec(x.shape, 8) == P())
    for device in step_fn.mesh.devices.flat:  # what each device really holds, against the plan
        assert parallel.addressable_bytes(state, device) == step_fn.state_bytes(shapes)
    per_device = step_fn.state_bytes(shapes)
    assert per_device <= replicated / EIGHT + unsplittable
    assert unsplittable < 0.002 * replicated  # the step, the rng, Adam's counts, the 10-class output bias
    print(f"classifier_digits:quick + EMA, 8 devices: {per_device} bytes per device (fsdp), {replicated} "
          f"(replicated), unsplittable {unsplittable}")
    largest = max(range(len(jax.tree.leaves(state.params))), key=lambda i: jax.tree.leaves(state.params)[i].size)
    kernel = jax.tree.leaves(state.params)[largest]
    assert kernel.sharding.spec != P() and len({s.data.shape for s in kernel.addressable_shards}) == 1
    assert kernel.addressable_shards[0].data.size == kernel.size // EIGHT  # the largest array: 1/8 per device
    assert jax.tree.leaves(state.ema_params)[largest].sharding == kernel.sharding  # the EMA lies as its params


def _steps(config, steps=3):
    """`steps` train steps of `config` on 8 devices: (the state gathered to the host, its shardings
    before the gather, the metrics of every step)."""
    task, step_fn = loop.setup(config, jax.devices()[:EIGHT])
    state = step_fn.put_state(loop.init_state(task, config))
    metrics = []
    for step in range(steps):
        state, m = step_fn(state, step_fn.put_batch(task.host_batch(step)))
        metrics.append(jax.device_get(m))  # one step in flight: XLA CPU's fake-device collectives are fragile
    shardings = jax.tree.map(lambda x: x.sharding, state)
    return jax.device_get(parallel.to_local(step_fn.host_state(state))), shardings, metrics


@pytest.mark.multidevice
def test_fsdp_trains_like_replicated():
    # Diffusion with an EMA and global-norm clipping (optim.grad_clip=1.0), the one reduction of the
    # update: the gradients and metrics come from the same per-device program in both layouts (bit
    # for bit), the elementwise Adam and EMA updates too; only the clipping norm's sum is ordered
    # differently (per shard, then across devices). Measured after 3 steps: the norm 1 float32 ulp
    # off, params and moments at most 1.5e-8 apart (about 1 ulp of values near 0.2). Tolerance: rtol
    # 1e-6 (8 ulps) with atol 1e-7, well under any real difference. Without clipping the two layouts
    # agree bit for bit.
    # The attention key biases are the exception: softmax ignores a bias added to every key, so their
    # gradient is exactly 0 in exact arithmetic and their values are rounding noise (Adam turns a
    # gradient of 1e-12 into a step of about lr * 1e-12 / eps = 1e-7), different noise in each layout
    # and with each XLA emitter (4e-8 with XLA CPU's fusion emitters, 1.6e-7 with the older ones the
    # tests compile with). They are checked to stay at that noise floor in both layouts, far below
    # one real update (lr = 1e-3).
    replicated, _, m_replicated = _steps(_config("diffusion_digits", "replicated"))
    fsdp, shardings, m_fsdp = _steps(_config("diffusion_digits", "fsdp"))
    for a, b in zip(m_replicated, m_fsdp):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-7, err_msg=k)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(replicated)[0]]
    assert len(_leaves(replicated)) == len(_leaves(fsdp)) == len(paths)
    noise = [i for i, path in enumerate(paths) if "['key']['bias']" in path]
    assert noise  # params, EMA and Adam's moments of the U-Net's attention key biases
    for i, (a, b) in enumerate(zip(_leaves(replicated), _leaves(fsdp))):
        if i in noise:
            assert np.abs(a).max() < 1e-6 and np.abs(b).max() < 1e-6, paths[i]
        else:
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7, err_msg=paths[i])
    assert int(fsdp.step) == 3
    # The step keeps the layout it was given (out_shardings): the state stays split between steps.
    kernel = shardings.params["unet"]["out_conv"]["kernel"]
    assert kernel.spec == parallel.fsdp_spec(fsdp.params["unet"]["out_conv"]["kernel"].shape, 8) != P()
    assert shardings.opt_state[1][0].mu["unet"]["out_conv"]["kernel"] == kernel


def _copy_at(src, dst, step):
    """A copy of run folder `src` whose newest checkpoint is `step` (later ones dropped)."""
    shutil.copytree(src, dst)
    for name in os.listdir(os.path.join(dst, "checkpoints")):
        if name.isdigit() and int(name) > step:
            shutil.rmtree(os.path.join(dst, "checkpoints", name))


@pytest.mark.multidevice
def test_checkpoints_restore_across_layouts_and_device_counts(tmp_path, capsys):
    devices = jax.devices()
    fsdp = _config("classifier_digits", "fsdp", *SHORT)
    replicated = _config("classifier_digits", "replicated", *SHORT)
    # Two uninterrupted runs, each saving step 2 and step 4: fsdp on 8 devices, replicated on 2.
    run_fsdp = loop.train(fsdp, str(tmp_path / "fsdp8"), devices=devices[:8], quiet=True)
    out = capsys.readouterr().out
    run_replicated = loop.train(replicated, str(tmp_path / "replicated2"), devices=devices[:2], quiet=True)
    task = loop.make_task(fsdp)
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(fsdp.seed))
    state_bytes = parallel.bytes_per_device(shapes, parallel.fsdp_sharding(shapes, parallel.make_mesh(devices[:8])))
    assert f"train state per device: {state_bytes / 2**20:.4g} MiB (fsdp over 8 device(s)" in out
    assert {r["state_bytes_per_device"] for r in log.read_metrics(str(tmp_path / "fsdp8"))} == {state_bytes}

    # The fsdp checkpoint restored as is, into either layout on 1, 2 and 8 devices.
    for n in (1, 2, 8):
        mesh = parallel.make_mesh(devices[:n])
        for shardings in (parallel.fsdp_sharding(shapes, mesh),
                          jax.tree.map(lambda _: jax.sharding.NamedSharding(mesh, P()), shapes)):
            target = abstract_state(shapes, shardings)
            restored = Checkpointer(str(tmp_path / "fsdp8")).restore(target, 4)
            assert jax.tree.map(lambda x: x.sharding, restored) == shardings
            for a, b in zip(_leaves(run_fsdp.state), _leaves(restored)):
                np.testing.assert_array_equal(a, b)

    # Resumed from step 2 in the other layout on another device count, each ends as its writer did:
    # fsdp on 8 -> replicated on 1, replicated on 2 -> fsdp on 8 (and on 2). The batch, the keys and
    # the schedule do not depend on the layout or the device count; the gradient mean's summation
    # order does (float rounding, the tolerance of tests/train/test_resharding.py).
    resumed = [(str(tmp_path / "fsdp8"), replicated, devices[:1], run_fsdp),
               (str(tmp_path / "replicated2"), fsdp, devices[:8], run_replicated),
               (str(tmp_path / "replicated2"), fsdp, devices[:2], run_replicated)]
    for i, (src, config, on, writer) in enumerate(resumed):
        workdir = str(tmp_path / f"resumed{i}")
        _copy_at(src, workdir, 2)
        result = loop.train(config, workdir, devices=on, quiet=True)
        assert "resumed from step 2" in capsys.readouterr().out
        assert result.step == 4
        for a, b in zip(_leaves(writer.state), _leaves(result.state)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        losses = {r["step"]: r["loss"] for r in log.read_metrics(workdir)}
        expected = {r["step"]: r["loss"] for r in log.read_metrics(src)}
        assert sorted(losses) == [1, 2, 3, 4]
        np.testing.assert_allclose([losses[3], losses[4]], [expected[3], expected[4]], rtol=1e-5)


@pytest.mark.slow
def test_two_processes_resume_a_one_process_fsdp_checkpoint_and_end_like_four_devices(tmp_path):
    # The state lies split across the processes: the step, the checkpoint (each process writes its
    # shards), and the gather for a sample grid (a collective every process joins) all span them.
    overrides = ["--config.train.sharding=fsdp", "--config.train.steps=4", "--config.train.log_every=1",
                 "--config.train.ckpt_every=2", "--config.train.sample_every=3"]
    config = config_lib.load("vae_digits:quick", overrides)
    four = jax.devices()[:4]
    reference = loop.train(config, str(tmp_path / "reference"), devices=four, quiet=True)
    workdir = str(tmp_path / "shared")
    loop.train(config, workdir, devices=four, quiet=True, stop_at=2)
    run = LocalRun(["train", "vae_digits:quick", "--workdir", workdir, "--quiet", *overrides],
                   num_processes=2, devices_per_process=2)
    codes = run.wait(timeout=240)
    assert codes == [0, 0], f"exit statuses {codes}\n{run.output(0)[-3000:]}\n{run.output(1)[-3000:]}"
    assert "resumed from step 2" in run.output(0) and os.path.isfile(os.path.join(workdir, "samples", "step_0000003.png"))
    task = loop.make_task(config)
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(config.seed))
    restored = Checkpointer(workdir).restore(abstract_state(shapes, parallel.fsdp_sharding(shapes, parallel.make_mesh(four))))
    assert int(restored.step) == 4
    for a, b in zip(_leaves(reference.state), _leaves(restored)):  # gloo's sum order against XLA's
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_tasks_that_update_their_params_their_own_way_refuse_fsdp_with_nothing_written(tmp_path):
    with pytest.raises(TaskError, match=r"^task gan cannot shard its state \(train.sharding='fsdp'\): its train step "
                                        r"updates its params its own way; set train.sharding='replicated'\.$"):
        loop.train(_config("gan_digits", "fsdp"), str(tmp_path / "gan"), quiet=True)
    lora = _config("classifier_digits", "fsdp", "--config.lora.rank=4", "--config.lora.init_from=unused")
    with pytest.raises(TaskError, match=r"LoRA run .* cannot shard its state"):
        loop.train(lora, str(tmp_path / "lora"), quiet=True)
    assert not os.path.exists(tmp_path / "gan") and not os.path.exists(tmp_path / "lora")


@pytest.mark.parametrize("overrides, message", [
    (["--config.train.sharding=zero3"], "train.sharding must be one of"),
    (["--config.train.sharding=fsdp", "--config.train.parallel=pmap"], "runs under train.parallel='shard_map'"),
])
def test_bad_sharding_settings_are_one_sentence(overrides, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.load("classifier_digits:quick", overrides)
