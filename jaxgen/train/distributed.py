"""Joining a multi-process run through JAX's own distributed runtime (`jax.distributed.initialize`).

A multi-process run is several copies of the same `jaxgen train` command, one per host (or per
GPU group), that form one JAX program: after `initialize`, `jax.devices()` lists every device of
every process, the training loop's mesh spans them all, each process feeds its rows of the global
batch, and gradients are averaged across hosts inside the compiled step. Where the values come from,
first match wins:

1. flags: `--coordinator HOST:PORT --num_processes N --process_id I` (all three together);
2. the environment: JAXGEN_COORDINATOR, JAXGEN_NUM_PROCESSES, JAXGEN_PROCESS_ID (all three);
3. `--distributed auto` (or JAXGEN_DISTRIBUTED=auto): JAX detects them itself on Cloud TPU VMs,
   under SLURM and Open MPI, and on GKE/Kubernetes; any of the values given above still wins;
4. otherwise the run is single-process and nothing is initialised (`--distributed off` forces this
   even when the environment says otherwise).

On CPU the processes exchange gradients through gloo (`jax_cpu_collectives_implementation`), which
is what lets this machine run a real 2-process test over loopback; on GPU and TPU the setting is
ignored and NCCL / ICI are used.
"""
import dataclasses
import os
from typing import Mapping

import jax
from jax._src import xla_bridge

from jaxgen.errors import UserError

ENV = {"coordinator": "JAXGEN_COORDINATOR", "num_processes": "JAXGEN_NUM_PROCESSES",
       "process_id": "JAXGEN_PROCESS_ID", "mode": "JAXGEN_DISTRIBUTED"}
MODES = ("auto", "off")


class DistributedError(UserError, ValueError):
    """A bad multi-process setting, or a run that could not join its peers."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """How this process joins a run. mode: 'off' (single process), 'explicit' (all three values
    known) or 'auto' (JAX detects what is None)."""

    mode: str = "off"
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _check_coordinator(text: str, source: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"{source} must look like HOST:PORT (e.g. 10.0.0.1:1234, port 1-65535), "
                               f"not {text!r}.")
    return text


def _int(value, source: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DistributedError(f"{source} must be an integer, not {value!r}.") from None


def resolve(coordinator: str | None = None, num_processes: int | str | None = None,
            process_id: int | str | None = None, mode: str | None = None,
            environ: Mapping[str, str] | None = None) -> Spec:
    """The Spec of this process from the flags (None where not given) and `environ` (default
    os.environ); raises DistributedError with one sentence for anything inconsistent."""
    environ = os.environ if environ is None else environ
    flags = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    given_flags = {k: v for k, v in flags.items() if v is not None}
    env_mode = environ.get(ENV["mode"]) or None
    mode = mode if mode is not None else env_mode
    if mode is not None and mode not in MODES:
        source = "--distributed" if mode != env_mode else ENV["mode"]
        raise DistributedError(f"{source} must be one of {', '.join(MODES)}, not {mode!r}.")
    if mode == "off":
        if given_flags:
            raise DistributedError(f"--distributed off contradicts --{sorted(given_flags)[0]}; drop one of them.")
        return Spec()
    # Flags win over the environment, value by value.
    values, sources = {}, {}
    for key in flags:
        if flags[key] is not None:
            values[key], sources[key] = flags[key], f"--{key}"
        elif environ.get(ENV[key]):
            values[key], sources[key] = environ[ENV[key]], ENV[key]
    if "coordinator" in values:
        _check_coordinator(str(values["coordinator"]), sources["coordinator"])
    for key in ("num_processes", "process_id"):
        if key in values:
            values[key] = _int(values[key], sources[key])
    if "num_processes" in values and values["num_processes"] < 1:
        raise DistributedError(f"{sources['num_processes']} must be at least 1, not {values['num_processes']}.")
    if "process_id" in values:
        n = values.get("num_processes")
        if values["process_id"] < 0 or (n is not None and values["process_id"] >= n):
            bound = f"0..{n - 1}" if n is not None else "at least 0"
            raise DistributedError(f"{sources['process_id']} must be in {bound}, not {values['process_id']}.")
    if mode == "auto":
        return Spec("auto", values.get("coordinator"), values.get("num_processes"), values.get("process_id"))
    if not values:
        return Spec()
    missing = [k for k in flags if k not in values]
    if missing:
        have = ", ".join(sources[k] for k in flags if k in values)
        need = " and ".join(f"--{k} (or {ENV[k]})" for k in missing)
        raise DistributedError(f"{have} given without {need}; a multi-process run needs all three, "
                               f"or --distributed auto on a TPU VM / SLURM / Open MPI cluster.")
    return Spec("explicit", values["coordinator"], values["num_processes"], values["process_id"])


def initialize(spec: Spec, timeout_s: int = 300) -> bool:
    """Joins the run `spec` describes (before anything touches a JAX device); True if it did.

    Waits up to `timeout_s` for the other processes. JAX's preemption service is switched off:
    the loop agrees on stopping inside its compiled step (see jaxgen.train.loop), and the service's
    own SIGTERM handler would be replaced by the loop's anyway (and its sync point is never reached
    when the notice arrives before the first step).
    """
    if spec.mode == "off":
        return False
    if jax.distributed.is_initialized():
        raise DistributedError("jax.distributed is already initialised in this process; join a run only once.")
    if xla_bridge.backends_are_initialized():
        raise DistributedError("a multi-process run must be joined before JAX touches any device; "
                               "call jaxgen.train.distributed.initialize first.")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_enable_preemption_service", False)
    try:
        jax.distributed.initialize(coordinator_address=spec.coordinator, num_processes=spec.num_processes,
                                   process_id=spec.process_id, initialization_timeout=timeout_s)
    except ValueError as e:  # auto-detection found nothing
        if spec.mode == "auto":
            raise DistributedError("--distributed auto found no cluster to join (not a Cloud TPU VM, SLURM or "
                                   "Open MPI job); give --coordinator, --num_processes and --process_id "
                                   f"instead ({str(e).splitlines()[0]}).") from e
        raise DistributedError(f"cannot join the run: {str(e).splitlines()[0]}") from e
    except Exception as e:  # noqa: BLE001 - e.g. the coordinator never answered
        where = spec.coordinator or "the detected coordinator"
        raise DistributedError(f"process {spec.process_id} could not join the run at {where} within "
                               f"{timeout_s} s ({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from e
    if jax.process_index() == 0:
        print(f"joined a {jax.process_count()}-process run (coordinator {spec.coordinator or 'auto-detected'}): "
              f"{jax.device_count()} {jax.devices()[0].platform} devices, {jax.local_device_count()} per process",
              flush=True)
    return True


def shutdown() -> None:
    """Leaves the run: waits for every process to arrive, so none exits while a peer still needs it."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()
