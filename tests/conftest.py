"""Test setup: force the CPU backend with 8 fake devices, before JAX is imported anywhere.

Single-device tests use `jax.devices()[:1]` explicitly (see jaxgen.train.parallel.make_mesh);
data-parallel tests use all 8.
"""
import os

os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags = (_flags + " --xla_force_host_platform_device_count=8").strip()
# Most of the suite's time is compiling programs that then run a handful of steps: without LLVM's
# optimisation passes XLA CPU compiles ~30 % faster, and the whole suite ran in 14 min instead of
# 18 (2 cores). A loop that runs hundreds of steps in-process can ask for XLA's default level
# back: `jax.jit(step, compiler_options={"xla_backend_optimization_level": 2})`.
if "xla_backend_optimization_level" not in _flags:
    _flags += " --xla_backend_optimization_level=0"
# XLA CPU's MLIR fusion emitters take more than half of a small train step's compile time at level 0
# (the digits diffusion U-Net's step: 6.8 CPU-s against 2.6 with the older emitters), and the
# programs run as fast and agree to float rounding (2e-7 on that step's state).
if "xla_cpu_use_fusion_emitters" not in _flags:
    _flags += " --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = _flags
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests build the embedded datasets into the repository's own .cache (shared by xdist workers through
# the pipeline's file lock), never into the user's cache.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
_CACHE = os.path.join(_ROOT, ".cache")
os.environ.setdefault("JAXGEN_DATA_DIR", os.path.join(_CACHE, "test_data"))
os.environ.setdefault("JAXGEN_XLA_CACHE", os.path.join(_CACHE, "xla"))  # also for CLI subprocesses

from jaxgen.train.parallel import configure_jax  # noqa: E402
from jaxgen.eval import inception  # noqa: E402

# `jaxgen eval` adds FID / KID when the FID Inception weights are in jaxgen's cache: the suite runs as
# on a machine without them (CI), whatever this machine's cache holds. tests/eval/test_fid.py finds
# this machine's weights, if any, through JAXGEN_TEST_FID_WEIGHTS.
os.environ.setdefault("JAXGEN_TEST_FID_WEIGHTS", inception.default_params_path())
os.environ["JAXGEN_CACHE"] = os.path.join(_CACHE, "test_cache")  # also for CLI subprocesses

# Most of the suite's time is XLA compilation (threefry alone takes seconds per program on this CPU);
# the persistent cache compiles each distinct program once per machine, across tests and subprocesses.
configure_jax()


import fcntl  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402


def _shared_dir(tmp_path_factory, name: str, build) -> str:
    """A folder that `build(path)` fills once per test run, however many xdist workers ask for it.

    pytest-xdist gives every worker its own session, so a module- or session-scoped fixture that
    trains a run would train it once per worker that runs one of its tests (`--dist worksteal`
    splits modules). The workers share the parent of their base temp folder: the first to get here
    builds under a file lock, the others wait for it and reuse the result (the waiting costs no CPU).
    Tests must treat the folder as read-only, except for files no other test reads.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (path / ".complete").exists():  # a worker that failed mid-build leaves no marker
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir()
                build(path)
                (path / ".complete").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return str(path)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory):
    """`shared_dir(name, build)` -> a folder built once per test run (see _shared_dir)."""
    return lambda name, build: _shared_dir(tmp_path_factory, name, build)


def _fresh_python(code: str) -> list[str]:
    """Runs `code` in a new Python process from the repository root (nothing this session imported
    is there yet) and returns its stdout split into words, after checking it exited 0."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


@pytest.fixture(scope="session")
def fresh_python():
    """`fresh_python(code)` -> the words `code` printed in a process of its own (see _fresh_python)."""
    return _fresh_python


@pytest.fixture(scope="session")
def classifier_run(shared_dir):
    """A quick classifier_digits run: the feature space that judges digit samples in tests."""
    from jaxgen import config as config_lib
    from jaxgen.train import loop

    def build(path):
        loop.train(config_lib.load("classifier_digits:quick"), str(path / "run"), quiet=True)
    return os.path.join(shared_dir("classifier_digits", build), "run")


@pytest.fixture(scope="session")
def clip_run(shared_dir):
    """A tiny CLIP trained 40 steps on shapes/tiny, the frozen CLIP of the unclip runs of
    tests/tasks/test_unclip.py and tests/test_unclip_prior_retrieval.py: enough for its image
    embeddings to tell scenes apart (the mean cosine of two different scenes' embeddings is ~0.6,
    against ~0.93 after the quick config's 10 steps), which test_unclip.py's prior test needs. On one
    device: 40 steps of this tiny model cost less there than on the 8 fake CPU devices, whose
    all-reduce dominates them (measured: the same losses as on 8, every param within 3e-7, so the prior
    test's gap and the unclip eval's scores do not move; tests/tasks/test_clip_task.py checks that 8
    devices step as 1)."""
    import jax

    from jaxgen import config as config_lib
    from jaxgen.train import loop

    config = config_lib.load("clip_shapes:quick", ["--config.train.steps=40", "--config.train.ckpt_every=40",
                                                   "--config.train.log_every=20", "--config.optim.lr=0.003"])
    workdir = shared_dir("unclip_clip_shapes",
                         lambda path: loop.train(config, str(path / "run"), devices=jax.devices()[:1], quiet=True))
    return os.path.join(workdir, "run")


@pytest.fixture(scope="session")
def unclip_run(clip_run, shared_dir):
    """A 4-step unclip run over clip_run (quick config, 16x16, decoder without attention), trained
    through the CLI."""
    from jaxgen.cli import main

    def build(path):
        assert main(["train", "unclip_shapes:quick", "--workdir", str(path / "run"), "--quiet",
                     f"--config.model.clip_workdir={clip_run}", "--config.model.decoder.attention_levels=()"]) == 0
    return os.path.join(shared_dir("unclip_run", build), "run")


# The modules whose single tests run longest (tens of seconds each on 2 cores), started first. With
# `--dist worksteal` a worker that finishes early takes tests from the other's queue, so the suite's
# wall time is its CPU time over two plus whatever test is still running when the queues empty: a
# 90-second test picked up last would add most of its length. Whole modules move, in their own
# order, so module-scoped fixtures are set up once as before.
SLOW_FIRST = ("tests/test_demo.py", "tests/tasks/test_unclip.py", "tests/benchmarks/test_sampling_smoke.py",
              "tests/tasks/test_text2image.py", "tests/benchmarks/test_scaling_smoke.py",
              "tests/test_lora_new_class.py", "tests/test_digits_quality.py")


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    order = {id(item): (rank.get(item.nodeid.split("::")[0], len(SLOW_FIRST)), i) for i, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])
