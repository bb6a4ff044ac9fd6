"""SIGKILL mid-run, re-run the same command: it resumes and ends bit-for-bit where an
uninterrupted run ends (data order and dropout RNG depend only on seed and step)."""
from tests._train_helpers import assert_trees_close, load_checkpoint, read_metrics_lines, run_cli, sigkill_at_checkpoint

ARGS = ("--config.num_train_steps=30", "--config.checkpoint_every_steps=5",
        "--config.eval_every_steps=0", "--config.model_kwargs.dropout_rate=0.2")


def test_sigkill_then_rerun_resumes_and_matches_uninterrupted_run(tmp_path):
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    run_cli(reference, *ARGS)

    done = sigkill_at_checkpoint(interrupted, *ARGS, step=10)
    assert 10 <= max(done) < 30, f"killed run should stop mid-way, has checkpoints {done}"

    rerun = run_cli(interrupted, *ARGS)  # the very same command
    assert f"resumed from" in rerun.stderr
    final, expected = load_checkpoint(interrupted, 30), load_checkpoint(reference, 30)
    for key in ("params", "batch_stats", "opt_state", "ema_params"):
        assert_trees_close(final[key], expected[key], rtol=1e-6, atol=1e-7)
    steps = [r["step"] for r in read_metrics_lines(interrupted) if r["split"] == "train"]
    assert steps == list(range(1, 31))
