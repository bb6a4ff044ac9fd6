"""SIGKILL mid-run, re-run the same command: it resumes and ends bit-for-bit where an
uninterrupted run ends (data order and dropout RNG depend only on seed and step)."""
import os
import signal
import subprocess
import time

from tests._train_helpers import REPO, assert_trees_close, cli, cli_env, load_checkpoint, read_metrics_lines, run_cli

ARGS = ("--config.num_train_steps=30", "--config.checkpoint_every_steps=5",
        "--config.eval_every_steps=0", "--config.model_kwargs.dropout_rate=0.2")


def test_sigkill_then_rerun_resumes_and_matches_uninterrupted_run(tmp_path):
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    run_cli(reference, *ARGS)

    proc = subprocess.Popen(cli(interrupted, *ARGS), env=cli_env(2), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = os.path.join(interrupted, "checkpoints", "10")
    deadline = time.time() + 240
    while not os.path.isdir(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = sorted(int(s) for s in os.listdir(os.path.join(interrupted, "checkpoints")) if s.isdigit())
    assert 10 <= max(done) < 30, f"killed run should stop mid-way, has checkpoints {done}"

    rerun = run_cli(interrupted, *ARGS)  # the very same command
    assert f"resumed from" in rerun.stderr
    final, expected = load_checkpoint(interrupted, 30), load_checkpoint(reference, 30)
    for key in ("params", "batch_stats", "opt_state", "ema_params"):
        assert_trees_close(final[key], expected[key], rtol=1e-6, atol=1e-7)
    steps = [r["step"] for r in read_metrics_lines(interrupted) if r["split"] == "train"]
    assert steps == list(range(1, 31))
