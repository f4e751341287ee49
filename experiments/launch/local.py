"""Runs one `jaxgen` command as N cooperating processes on this machine (a multi-host run over
loopback), each with its own fake CPU devices:

    python -m experiments.launch.local --num_processes 2 --devices_per_process 2 -- \\
        train vae_digits:quick --workdir runs/vae_2x2

Every process gets JAXGEN_COORDINATOR=127.0.0.1:<free port>, JAXGEN_NUM_PROCESSES and its own
JAXGEN_PROCESS_ID (see jaxgen.train.distributed), JAX_PLATFORMS=cpu and
XLA_FLAGS=--xla_force_host_platform_device_count=<devices_per_process>. Output lines are prefixed
with the process id. SIGINT / SIGTERM sent to the launcher are forwarded to every process (so a
preemption reaches all of them, as on a real cluster). If one process fails, the others are stopped
after `--grace` seconds (they would otherwise wait for it until JAX's heartbeat timeout), and after
`--timeout` seconds everything is killed: a multi-process test can never hang.

The exit status is the first non-zero status among the processes (124 after a timeout), else 0.
The same class drives the tests (tests/train/test_multihost.py).
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMED_OUT = 124


def xla_flags_with_devices(flags: str, devices: int) -> str:
    """`flags` (an XLA_FLAGS value) with its fake CPU device count replaced by `devices`: the
    caller's other flags (optimisation level, emitters) still apply in the child."""
    kept = [f for f in flags.split() if "xla_force_host_platform_device_count" not in f]
    return " ".join(kept + [f"--xla_force_host_platform_device_count={devices}"])


def free_port() -> int:
    """A TCP port nobody listens on right now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRun:
    """`num_processes` copies of `python -m <module> *argv` (default module: jaxgen.cli) forming one
    run; starts them at once.

    `outputs[i]` collects process i's stdout and stderr lines; `echo` also prints them, prefixed.
    """

    def __init__(self, argv: list[str], num_processes: int = 2, devices_per_process: int = 2,
                 port: int | None = None, env: dict[str, str] | None = None, echo: bool = False,
                 cwd: str = REPO, module: str = "jaxgen.cli"):
        if num_processes < 1 or devices_per_process < 1:
            raise ValueError(f"num_processes and devices_per_process must be at least 1, "
                             f"not {num_processes} and {devices_per_process}.")
        self.coordinator = f"127.0.0.1:{port or free_port()}"
        self.outputs: list[list[str]] = [[] for _ in range(num_processes)]
        self.procs: list[subprocess.Popen] = []
        self._threads = []
        self._echo = echo
        for i in range(num_processes):
            child_env = dict(os.environ if env is None else env)
            child_env.update(JAX_PLATFORMS="cpu", JAXGEN_COORDINATOR=self.coordinator,
                             JAXGEN_NUM_PROCESSES=str(num_processes), JAXGEN_PROCESS_ID=str(i),
                             XLA_FLAGS=xla_flags_with_devices(child_env.get("XLA_FLAGS", ""), devices_per_process),
                             PYTHONUNBUFFERED="1")
            child_env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, child_env.get("PYTHONPATH")) if p)
            proc = subprocess.Popen([sys.executable, "-m", module, *argv], cwd=cwd, env=child_env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)  # its own group: killed with its children
            self.procs.append(proc)
            thread = threading.Thread(target=self._pump, args=(i, proc), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.outputs[i].append(line)
            if self._echo:
                print(f"[{i}] {line}", end="", flush=True)

    def output(self, i: int = 0) -> str:
        return "".join(self.outputs[i])

    def send_signal(self, sig: int, process_ids: list[int] | None = None) -> None:
        """Sends `sig` to the given processes (default: all) that are still running."""
        for i in range(len(self.procs)) if process_ids is None else process_ids:
            if self.procs[i].poll() is None:
                self.procs[i].send_signal(sig)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    def wait(self, timeout: float = 600.0, grace: float = 30.0) -> list[int]:
        """Waits for every process; returns their exit statuses (124 for any killed at the timeout).

        Once one process has failed, the others get `grace` seconds to finish before they are killed.
        """
        deadline = time.time() + timeout
        failed_at = None
        timed_out = False
        while any(p.poll() is None for p in self.procs):
            now = time.time()
            if failed_at is None and any(p.poll() not in (None, 0) for p in self.procs):
                failed_at = now
            if now > deadline or (failed_at is not None and now > failed_at + grace):
                timed_out = now > deadline
                self.kill()
                break
            time.sleep(0.05)
        codes = [p.wait() for p in self.procs]
        for thread in self._threads:
            thread.join(timeout=5)
        return [TIMED_OUT if timed_out and c == -signal.SIGKILL else c for c in codes]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_processes", "-n", type=int, default=2)
    p.add_argument("--devices_per_process", "-d", type=int, default=2)
    p.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    p.add_argument("--timeout", type=float, default=3600.0, help="kill everything after this many seconds")
    p.add_argument("--grace", type=float, default=30.0, help="seconds the others get after one process fails")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the jaxgen command line")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the jaxgen command to run after --, e.g. -- train vae_digits:quick --workdir runs/x")
    run = LocalRun(command, args.num_processes, args.devices_per_process, args.port, echo=True)
    forward = lambda signum, frame: run.send_signal(signum)  # noqa: E731
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = run.wait(args.timeout, args.grace)
    print(f"exit statuses: {codes}", flush=True)
    return next((c for c in codes if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
