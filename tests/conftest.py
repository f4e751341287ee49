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

import jax  # noqa: E402

jax.config.update("jax_threefry_partitionable", True)
