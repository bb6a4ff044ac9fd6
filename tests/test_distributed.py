"""Two processes on 127.0.0.1 (jax.distributed, gloo, 2 fake CPU devices each) train the
same steps as one process with 4 devices: the parameters agree."""
import subprocess

from _train_helpers import (
    REPO, assert_trees_close, cli, cli_env, free_port, load_checkpoint, tiny_config,
)
from mobilenet_jax.train import read_metrics, train_and_evaluate

STEPS = dict(num_train_steps=4, checkpoint_every_steps=4, eval_every_steps=0, num_eval_steps=2,
             eval_batch_size=8, warmup_steps=0)


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
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-4000:]
    assert "process 1 of 2" in outputs[1] or "2 process(es)" in outputs[0]

    single = str(tmp_path / "single")
    result = train_and_evaluate(tiny_config(num_devices=4, **STEPS), single)
    assert result["step"] == 4

    got, want = load_checkpoint(multi, 4), load_checkpoint(single, 4)
    assert int(got["step"]) == 4
    assert_trees_close(got["params"], want["params"], rtol=1e-4, atol=1e-6)
    assert_trees_close(got["batch_stats"], want["batch_stats"], rtol=1e-4, atol=1e-6)
    # Metrics written once (process 0 only), evaluation exact over both processes' shares.
    multi_eval = read_metrics(multi, "eval")
    assert [r["step"] for r in multi_eval] == [4]
    assert multi_eval[0]["num_examples"] == 16
    assert abs(multi_eval[0]["accuracy"] - result["eval_accuracy"]) < 1e-6
