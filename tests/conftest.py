"""Test setup: force the CPU backend with 8 fake devices, before JAX is imported anywhere.

Single-device tests use `jax.devices()[:1]` explicitly (see jaxgen.train.parallel.make_mesh);
data-parallel tests use all 8.
"""
import os

os.environ["JAX_PLATFORMS"] = "cpu"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests build the embedded datasets into the repository's own .cache (shared by xdist workers through
# the pipeline's file lock), never into the user's cache.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache")
os.environ.setdefault("JAXGEN_DATA_DIR", os.path.join(_CACHE, "test_data"))
os.environ.setdefault("JAXGEN_XLA_CACHE", os.path.join(_CACHE, "xla"))  # also for CLI subprocesses

from jaxgen.train.parallel import configure_jax  # noqa: E402

# Most of the suite's time is XLA compilation (threefry alone takes seconds per program on this CPU);
# the persistent cache compiles each distinct program once per machine, across tests and subprocesses.
configure_jax()


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory):
    """A quick classifier_digits run: the feature space that judges digit samples in tests."""
    from jaxgen import config as config_lib
    from jaxgen.train import loop

    workdir = str(tmp_path_factory.mktemp("clf"))
    loop.train(config_lib.load("classifier_digits:quick"), workdir, quiet=True)
    return workdir
