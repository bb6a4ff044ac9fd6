"""Several processes on 127.0.0.1 (jax.distributed, gloo, fake CPU devices) train the same
steps as one process with 8 devices: the parameters agree. As on a pod, the hosts share a
workdir in a bucket (a GCS server on this machine, tests/_fake_gcs.py). The first launch, 2
processes x 4 devices, is preempted: SIGTERM to process 1 alone, and JAX's preemption sync
point makes both save one checkpoint at the same step and exit 143. The same command then
resumes it on the README's simulated pod, 4 processes x 2 devices (a checkpoint restores
onto any number of hosts; the global batch and device count stay the same).

Both runs do the same per-device arithmetic; only the all-reduce (gloo across processes vs
in-process) sums in another order. A deep BatchNorm network at initialisation amplifies such
rounding differences from step to step (its gradients explode with depth; Yang et al. 2019,
"A Mean Field Theory of Batch Normalization"), so the run uses a small learning rate and
the first step is compared tightly, the last one relative to each tensor's scale."""
import os
import re
import signal
import subprocess

import pytest

import jax
import numpy as np
from etils import epath

from tests._fake_gcs import BUCKET
from tests._train_helpers import (
    assert_trees_close_to_scale, cli, cli_env, free_port, load_checkpoint, tiny_config,
)
from mobilenet_jax.train import read_metrics, train_and_evaluate
from mobilenet_jax.train.distributed import enable_compilation_cache

# Checkpoints only at the end: the one before it is the preemption's.
STEPS = dict(num_train_steps=3, checkpoint_every_steps=0, keep_checkpoints=3, eval_every_steps=0,
             num_eval_steps=2, eval_batch_size=8, warmup_steps=0, learning_rate=1e-4)


def _launch(workdir: str, gcs, cwd, processes: int, devices: int) -> list[subprocess.Popen]:
    """`processes` trainer CLIs of `devices` fake devices each, as the hosts of a pod."""
    port = free_port()
    env = {**cli_env(devices), **gcs.env()}
    return [
        subprocess.Popen(
            cli(workdir, *[f"--config.{k}={v}" for k, v in STEPS.items()],
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                f"--config.distributed.num_processes={processes}", f"--config.distributed.process_id={i}"),
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(processes)
    ]


def _finish(procs: list[subprocess.Popen], head: str = "") -> list[str]:
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    outputs[0] = head + outputs[0]
    return outputs


def _report(procs, outputs) -> str:
    return "\n".join(f"--- process {j} (exit {p.returncode}) ---\n{out[-3000:]}"
                     for j, (p, out) in enumerate(zip(procs, outputs)))


def test_preempted_two_processes_resumed_on_four_match_one_process_with_eight_devices(tmp_path, gcs):
    multi = f"gs://{BUCKET}/multi"
    # Preempted: SIGTERM to process 1 once process 0 says training begins.
    procs = _launch(multi, gcs, tmp_path, processes=2, devices=4)
    head = ""
    for line in procs[0].stdout:
        head += line
        if "training mobilenet_v2" in line:
            procs[1].send_signal(signal.SIGTERM)
            break
    outputs = _finish(procs, head)
    assert all(p.returncode == 143 for p in procs), _report(procs, outputs)
    saved = [re.findall(r"preempted \(SIGTERM\): checkpoint (\S+) written at step (\d+)", out)
             for out in outputs]
    assert saved[0] == saved[1] and len(saved[0]) == 1, _report(procs, outputs)
    preempted_at = int(saved[0][0][1])
    assert saved[0][0][0] == f"{multi}/checkpoints/{preempted_at}" and 1 <= preempted_at < 3
    assert all(f"[host {i}/2]" in out for i, out in enumerate(outputs))
    # Resumed by the same command, on the simulated pod.
    procs = _launch(multi, gcs, tmp_path, processes=4, devices=2)
    outputs = _finish(procs)
    assert all(p.returncode == 0 for p in procs), _report(procs, outputs)
    assert f"resumed from {multi}/checkpoints/{preempted_at}" in outputs[0]
    assert "[host 0/4]" in outputs[0] and "4 process(es)" in outputs[0]
    # The suite's shared compilation cache was asked for and refused (see the next test).
    assert "persistent compilation cache off" in outputs[0]
    gcs.forget_listings()
    # Written once, by process 0: metrics and config (the others log warnings only).
    assert [r["step"] for r in read_metrics(multi, "train")] == [1, 2, 3]
    assert (epath.Path(multi) / "config.json").exists()
    assert "final {" in outputs[0] and not any("final {" in out for out in outputs[1:])
    got = {step: load_checkpoint(multi, step) for step in (preempted_at, 3)}
    multi_eval = read_metrics(multi, "eval")
    assert os.listdir(tmp_path) == []

    single = str(tmp_path / "single")
    result = train_and_evaluate(tiny_config(num_devices=8, **{**STEPS, "checkpoint_every_steps": 1}), single)
    assert result["step"] == 3

    for step in (preempted_at, 3):
        rel, atol = (1e-4, 1e-7) if step == 1 else (1e-3, 1e-5)
        want = load_checkpoint(single, step)
        assert int(got[step]["step"]) == int(want["step"]) == step
        # The optimizer's moments hold raw gradients, which the amplification reaches first;
        # they are compared after the first step only.
        for part in ("params", "batch_stats") + (("opt_state",) if step == 1 else ()):
            assert_trees_close_to_scale(got[step][part], want[part], rel, f"step {step} {part}", atol)
    start = load_checkpoint(single, 1)  # the comparison is not vacuous: the weights moved
    moved = [float(np.abs(a - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(want["params"]), jax.tree_util.tree_leaves(start["params"]))]
    assert max(moved) > 1e-4
    # Metrics written once (process 0 only), evaluation exact over the processes' shares.
    assert [r["step"] for r in multi_eval] == [3]
    assert multi_eval[0]["num_examples"] == 16
    assert abs(multi_eval[0]["accuracy"] - result["eval_accuracy"]) < 1e-6


@pytest.mark.parametrize("process_count, cached", [(1, True), (2, False)])
def test_compilation_cache_is_off_in_multi_process_cpu_runs(tmp_path, monkeypatch, process_count, cached):
    """Only process 0 writes the persistent cache and every process has its own key, so with a
    warm cache process 0 skips compiling while the others do not, and waits at the first gloo
    collective longer than gloo's fixed 30 s (reproduced: 2 of 2 warm runs under load failed)."""
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    monkeypatch.setattr(jax, "process_count", lambda: process_count)
    try:
        enable_compilation_cache(str(tmp_path))
        # Off means off, also where JAX_COMPILATION_CACHE_DIR (as this suite sets it) named a dir.
        assert jax.config.jax_enable_compilation_cache is cached
        assert (jax.config.jax_compilation_cache_dir == str(tmp_path)) is cached
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_enable_compilation_cache", before[1])
