"""Two processes on 127.0.0.1 (jax.distributed, gloo, 2 fake CPU devices each) train the
same steps as one process with 4 devices: the parameters agree.

Both runs do the same per-device arithmetic; only the all-reduce (gloo across processes vs
in-process) sums in another order. A deep BatchNorm network at initialisation amplifies such
rounding differences from step to step (its gradients explode with depth; Yang et al. 2019,
"A Mean Field Theory of Batch Normalization"), so the run uses a small learning rate and
the first step is compared tightly, the last one relative to each tensor's scale."""
import subprocess

import pytest

import jax
import numpy as np

from tests._train_helpers import (
    REPO, assert_trees_close_to_scale, cli, cli_env, free_port, load_checkpoint, tiny_config,
)
from mobilenet_jax.train import read_metrics, train_and_evaluate
from mobilenet_jax.train.distributed import enable_compilation_cache

STEPS = dict(num_train_steps=3, checkpoint_every_steps=1, keep_checkpoints=3, eval_every_steps=0,
             num_eval_steps=2, eval_batch_size=8, warmup_steps=0, learning_rate=1e-4)


def test_two_processes_match_one_process_with_four_devices(tmp_path):
    multi = str(tmp_path / "multi")
    port = free_port()
    procs = [
        subprocess.Popen(
            cli(multi, *[f"--config.{k}={v}" for k, v in STEPS.items()],
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"),
            env=cli_env(2), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(
        f"--- process {j} (exit {p.returncode}) ---\n{out[-3000:]}" for j, (p, out) in enumerate(zip(procs, outputs))
    )
    assert "process 1 of 2" in outputs[1] or "2 process(es)" in outputs[0]
    # The suite's shared compilation cache was asked for and refused (see the next test).
    assert "persistent compilation cache off" in outputs[0]

    single = str(tmp_path / "single")
    result = train_and_evaluate(tiny_config(num_devices=4, **STEPS), single)
    assert result["step"] == 3

    for step, rel, atol in ((1, 1e-4, 1e-7), (3, 1e-3, 1e-5)):
        got, want = load_checkpoint(multi, step), load_checkpoint(single, step)
        assert int(got["step"]) == int(want["step"]) == step
        # The optimizer's moments hold raw gradients, which the amplification reaches first;
        # they are compared after the first step only.
        for part in ("params", "batch_stats") + (("opt_state",) if step == 1 else ()):
            assert_trees_close_to_scale(got[part], want[part], rel, f"step {step} {part}", atol)
    start = load_checkpoint(single, 1)  # the comparison is not vacuous: the weights moved
    moved = [float(np.abs(a - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(want["params"]), jax.tree_util.tree_leaves(start["params"]))]
    assert max(moved) > 1e-4
    # Metrics written once (process 0 only), evaluation exact over both processes' shares.
    multi_eval = read_metrics(multi, "eval")
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
