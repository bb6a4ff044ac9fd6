"""Shared by the trainer tests: the tiny config, a shared compilation cache, subprocess
runs of the CLI, and reading checkpoints back."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp

from tests.conftest import TEST_CACHE_DIR, TEST_XLA_FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(REPO, "configs", "tiny_test.py")


def tiny_config(**overrides):
    from mobilenet_jax.train import load_config

    overrides.setdefault("compilation_cache_dir", TEST_CACHE_DIR)
    return load_config(TINY_CONFIG, overrides)


def cli(workdir: str, *overrides: str, config: str = TINY_CONFIG) -> list[str]:
    """argv of `python -m mobilenet_jax.train` on `config` (the tiny one by default)."""
    return [
        sys.executable, "-m", "mobilenet_jax.train", f"--config={config}",
        f"--workdir={workdir}", f"--config.compilation_cache_dir={TEST_CACHE_DIR}", *overrides,
    ]


def cli_env(devices: int, xla_flags: str = TEST_XLA_FLAGS) -> dict:
    """The environment of a trainer subprocess: `devices` fake CPU devices, and the suite's
    fast-compile XLA flags unless `xla_flags` says otherwise ("" = XLA's defaults)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {xla_flags}"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


def run_cli(workdir: str, *overrides: str, devices: int = 2, timeout: float = 240,
            config: str = TINY_CONFIG, xla_flags: str = TEST_XLA_FLAGS):
    proc = subprocess.run(
        cli(workdir, *overrides, config=config), env=cli_env(devices, xla_flags), cwd=REPO, capture_output=True,
        text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def sigkill_at_checkpoint(workdir: str, *overrides: str, step: int, config: str = TINY_CONFIG,
                          devices: int = 2, timeout: float = 240) -> list[int]:
    """Starts the trainer CLI, SIGKILLs it once checkpoint `step` exists (a preemption without
    warning), and returns the checkpoint steps it left."""
    import signal
    import time

    proc = subprocess.Popen(cli(workdir, *overrides, config=config), env=cli_env(devices), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = os.path.join(workdir, "checkpoints", str(step))
    deadline = time.time() + timeout
    while not os.path.isdir(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


def load_checkpoint(workdir: str, step: int | None = None, subdir: str = "checkpoints") -> dict:
    """A saved state as a nested dict of numpy arrays, as written."""
    manager = ocp.CheckpointManager(os.path.join(workdir, subdir))
    step = manager.latest_step() if step is None else step
    return manager.restore(step, args=ocp.args.StandardRestore())


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    import jax

    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    assert ta == tb, "tree structures differ"
    for (path, x), (_, y) in zip(la, lb):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


def assert_trees_close_to_scale(got, want, rel: float, what: str = "", atol: float = 1e-7):
    """Each leaf within `rel` of its own scale (max |want|) plus `atol`: float32 agreement
    of computations that sum the same numbers in another order (elementwise rtol fails on
    the near-zero entries of a deep network's gradients)."""
    import jax

    leaves_got, leaves_want = jax.tree_util.tree_leaves_with_path(got), jax.tree_util.tree_leaves(want)
    assert len(leaves_got) == len(leaves_want) > 0
    for (path, x), y in zip(leaves_got, leaves_want):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        err, scale = np.abs(x - y).max(), np.abs(y).max()
        assert err <= rel * scale + atol, f"{what}{jax.tree_util.keystr(path)}: max |diff| {err:.3g}, scale {scale:.3g}"


def relative_l2(got, want) -> float:
    """||got - want|| / ||want|| over every leaf of two trees of the same structure (float64)."""
    import jax

    pairs = list(zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)))
    assert pairs
    diff = sum(float(np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)) for x, y in pairs)
    norm = sum(float(np.sum(np.asarray(y, np.float64) ** 2)) for _, y in pairs)
    return float(np.sqrt(diff / max(norm, 1e-300)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_metrics_lines(workdir: str) -> list[dict]:
    from mobilenet_jax.train.metrics import read_metrics

    return read_metrics(workdir)
