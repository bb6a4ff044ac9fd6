"""Multi-host setup: `jax.distributed.initialize` when the config or environment asks.

On a TPU pod (or SLURM / Open MPI cluster) every host runs the same command with
`--config.distributed.initialize=true`; JAX finds the coordinator itself. Elsewhere give
`coordinator_address`, `num_processes` and `process_id` (or set JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID). On CPU the cross-process collectives use gloo.

Preemption: TPU and spot VMs get SIGTERM shortly before they go away. `PreemptionNotice`
tells the trainer at which step boundary to save and stop: with jax.distributed, JAX's
preemption sync manager (started by `jax.distributed.initialize`, with its own SIGTERM
handler) agrees on one step for every process, however many of them got the signal; in a
single process a SIGTERM handler sets a flag that the next step boundary reads.

Work that one process does for all (preparing a tfds data set in a shared data_dir) goes
through `primary_first`: process 0 does it while the others wait for its outcome in
jax.distributed's key-value store.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
from typing import Callable

import jax
import ml_collections

from mobilenet_jax import paths
from mobilenet_jax.errors import UserError

log = logging.getLogger("mobilenet_jax")


def wants_distributed(dist: ml_collections.ConfigDict) -> bool:
    if dist.initialize == "true":
        return True
    if dist.initialize == "false":
        return False
    return bool(dist.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"))


def maybe_initialize(dist: ml_collections.ConfigDict) -> bool:
    """Initialises jax.distributed if asked (idempotent); returns whether it is initialised.
    Must run before anything touches a JAX backend (devices, arrays)."""
    if dist.initialize not in ("auto", "true", "false"):
        raise ValueError("config.distributed.initialize must be 'auto', 'true' or 'false'")
    if jax.distributed.is_initialized():
        return True
    if not wants_distributed(dist):
        return False
    if dist.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", dist.cpu_collectives)
    kwargs = {}
    if dist.coordinator_address:
        kwargs["coordinator_address"] = dist.coordinator_address
    if dist.num_processes >= 0:
        kwargs["num_processes"] = dist.num_processes
    if dist.process_id >= 0:
        kwargs["process_id"] = dist.process_id
    jax.distributed.initialize(**kwargs)
    log.info("jax.distributed: process %d of %d, %d local / %d global devices",
             jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


# How long the other processes wait for process 0's `primary_first` work: a download and
# preparation of a large data set (COCO, ImageNet) takes hours.
PRIMARY_FIRST_TIMEOUT_S = 48 * 3600
_primary_first_calls = itertools.count()


class PrimaryFailedError(UserError, RuntimeError):
    """Process 0 failed on a mistake of the user's in work it did for every process."""


def primary_first(task: str, fn: Callable[[], None]) -> None:
    """Runs `fn` on process 0 while every other process waits for its outcome; in a single
    process, just runs it. The wait is a blocking read of jax.distributed's key-value store,
    not a device collective: gloo gives a peer 30 s, and a download takes hours. A UserError
    on process 0 is raised on every process with process 0's message; any other exception
    there stops the others too, as a bug (RuntimeError). Every process must make the same
    sequence of calls (the calls are numbered to pair them up)."""
    if jax.process_count() == 1:
        fn()
        return
    from jax._src import distributed as jax_distributed  # the coordination service's client

    client = jax_distributed.global_state.client
    key = f"mobilenet_jax/primary_first/{next(_primary_first_calls)}"
    if jax.process_index() == 0:
        try:
            fn()
        except UserError as e:
            from mobilenet_jax.cli import one_line

            client.key_value_set(key, "error:" + one_line(e))
            raise
        except BaseException as e:
            client.key_value_set(key, f"bug:{type(e).__name__}: {e}")
            raise
        client.key_value_set(key, "ok")
        return
    log.info("waiting for process 0: %s", task)
    outcome = client.blocking_key_value_get(key, PRIMARY_FIRST_TIMEOUT_S * 1000)
    if outcome.startswith("error:"):
        raise PrimaryFailedError(f"{outcome[len('error:'):]} (process 0, {task})")
    if outcome != "ok":
        raise RuntimeError(f"process 0 failed while {task}: {outcome[len('bug:'):]}")


def log_format() -> str:
    """The CLI's log line format: `[host i/n]` after the time in multi-process runs, so the
    interleaved logs of a pod say which host each line comes from."""
    host = f"[host {jax.process_index()}/{jax.process_count()}] " if jax.process_count() > 1 else ""
    return f"%(asctime)s {host}%(levelname)s %(message)s"


def enable_compilation_cache(path: str) -> None:
    """Persistent XLA compilation cache (on by default; "" disables it). Re-running a config
    skips compilation; the cache is keyed by program and backend, so it is safe to share.

    Not in multi-process CPU runs: there every process gets its own cache key (the hashed
    compile options differ per process) and only process 0 writes, so on a warm cache process
    0 loads its programs at once while the others recompile, and process 0 waits at the first
    gloo collective for the others' whole compile time. Gloo gives a peer 30 s to arrive
    (its rendezvous timeout is fixed), so a compile longer than that kills the run. The cache
    is then switched off outright, also when JAX_COMPILATION_CACHE_DIR set it; call this
    before the process compiles anything (JAX decides on the cache at the first compile)."""
    if jax.process_count() > 1 and jax.default_backend() == "cpu":
        jax.config.update("jax_enable_compilation_cache", False)
        log.info("persistent compilation cache off: %d CPU processes would compile unevenly "
                 "(only process 0 finds its entries) and overrun gloo's 30 s rendezvous",
                 jax.process_count())
        return
    if not path:
        return
    jax.config.update("jax_compilation_cache_dir", paths.to_str(path, "config.compilation_cache_dir"))


class PreemptionNotice:
    """Whether the run was asked to stop (SIGTERM), checked once per step boundary.

    `reached(step)` is called by every process at every step from the same first step, as
    `jax.experimental.multihost_utils.reached_preemption_sync_point` requires; it turns
    True on all processes at the same step (the step after the largest one any process had
    reached when the notice spread). `start()` installs the single-process SIGTERM handler
    for the training loop only; `stop()` restores the previous one."""

    def __init__(self):
        self.synced = jax.distributed.is_initialized()
        self._signalled = False
        self._installed = False
        self._previous = None

    def start(self) -> "PreemptionNotice":
        if not self.synced and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._installed = True
        return self

    def stop(self) -> None:
        if self._installed:  # a handler set outside Python reads as None: restore the default
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self._installed = False

    def _on_sigterm(self, signum, frame) -> None:
        self._signalled = True

    def reached(self, step: int) -> bool:
        if self.synced:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled
