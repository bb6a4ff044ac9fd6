"""Workdirs in a bucket. Against a GCS server on this machine (tests/_fake_gcs.py): the
trainer's CLI writes its run to gs://, is preempted (SIGTERM), resumes from the bucket with
the same command and ends where an uninterrupted local run ends; convert reads Keras weights
from the bucket and writes a converter workdir there; evaluate reads it back. Nothing lands
on the local disk: the working directory stays empty and no `gs:` folder appears.
A scheme no file system serves, a bucket out of reach or a file as workdir stops with a
PathError before anything is written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time


from tests._fake_gcs import BUCKET
from tests._train_helpers import REPO, TINY_CONFIG, assert_trees_close, cli, cli_env

ARGS = {"num_train_steps": 8, "checkpoint_every_steps": 0, "eval_every_steps": 4,
        "log_every_steps": 1, "model_kwargs.dropout_rate": 0.2}


def _overrides() -> list[str]:
    return [f"--config.{k}={v}" for k, v in ARGS.items()]


def _no_uri_folders(*roots: str) -> list[str]:
    """Local folders named like a URI scheme (`gs:`), the mark of a URI taken as a path."""
    found = []
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            found += [os.path.join(dirpath, d) for d in dirnames if d.endswith(":")]
            dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__", "results")]
    return found


def test_workdir_no_file_system_serves_is_one_error_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    """The trainer's command, in-process: gs:// with no GCS in reach (this machine is offline;
    TensorFlow's client, which epath picks when TensorFlow is installed) and an unknown
    scheme each end in one `error:` line naming the flag, in seconds, with nothing written."""
    from mobilenet_jax import cli
    from mobilenet_jax.train.__main__ import main
    from tests.test_cli_errors import _assert_one_error_line

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for workdir, words in (("gs://fake-bucket/run", "cannot write there"),
                           ("foo://bucket/run", "no file system serves 'foo://'")):
        start = time.perf_counter()
        assert cli.run(main, [f"--config={TINY_CONFIG}", f"--workdir={workdir}", "--config.num_devices=2"]) == 1
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err
        with capsys.disabled():
            print(f"\n{workdir}: {seconds:.1f} s: {err.strip().splitlines()[-1]}")
        _assert_one_error_line(err, f"--workdir={workdir}")
        assert words in err and seconds < 60
    assert os.listdir(cwd) == []
    assert _no_uri_folders(str(tmp_path), REPO) == []


def _restore(directory: str, step: int) -> dict:
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(directory)
    try:
        return manager.restore(step, args=ocp.args.StandardRestore())
    finally:
        manager.close()


def _bucket_steps(path) -> list[int]:
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def test_train_preempt_resume_convert_evaluate_in_a_bucket(tmp_path, monkeypatch, capsys, gcs):
    from etils import epath

    from mobilenet_jax import convert, evaluate
    from mobilenet_jax.train import read_metrics
    from tests._keras_weights import random_keras_model
    from tests.test_convert_evaluate import NAME, NUM_EXAMPLES, RES, VARIANT, _mock_imagenet

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run = f"gs://{BUCKET}/runs/tiny"
    env = {**cli_env(2), **gcs.env()}

    # Preempted: SIGTERM once training has begun -> one checkpoint, exit status 143.
    proc = subprocess.Popen(cli(run, *_overrides()), env=env, cwd=cwd, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "training mobilenet_v2" in line:
            proc.send_signal(signal.SIGTERM)
            break
    lines.append(proc.communicate(timeout=300)[1])
    log = "".join(lines)
    assert proc.returncode == 143, log[-3000:]
    assert "preempted (SIGTERM)" in log
    ckpt_dir = epath.Path(run) / "checkpoints"
    (preempted_at,) = _bucket_steps(ckpt_dir)
    assert 1 <= preempted_at < ARGS["num_train_steps"]

    # The same command resumes from the bucket and finishes.
    rerun = subprocess.run(cli(run, *_overrides()), env=env, cwd=cwd, text=True,
                           capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    gcs.forget_listings()
    assert f"resumed from {run}/checkpoints/{preempted_at}" in rerun.stderr
    assert [r["step"] for r in read_metrics(run, "train")] == list(range(1, 9))
    assert [r["step"] for r in read_metrics(run, "eval")] == [4, 8]
    assert json.loads((epath.Path(run) / "config.json").read_text())["num_train_steps"] == 8
    assert _bucket_steps(ckpt_dir) == [preempted_at, 8] and _bucket_steps(epath.Path(run) / "best")

    # ... and ends where an uninterrupted run (the same command, in the bucket too) ends.
    reference = f"gs://{BUCKET}/runs/reference"
    done = subprocess.run(cli(reference, *_overrides()), env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final, expected = (_restore(f"{d}/checkpoints", 8) for d in (run, reference))
    for key in ("params", "batch_stats", "opt_state", "ema_params"):
        assert_trees_close(final[key], expected[key], rtol=1e-6, atol=1e-7)

    # Keras weights in the bucket -> a converter workdir in the bucket -> evaluated.
    local_weights = tmp_path / "v1.weights.h5"
    random_keras_model(NAME, RES, **VARIANT).save_weights(str(local_weights))
    weights = epath.Path(f"gs://{BUCKET}/weights/v1.weights.h5")
    weights.write_bytes(local_weights.read_bytes())
    converted = f"gs://{BUCKET}/converted"
    assert convert.main(["--keras", str(weights), "--model", NAME, "--width", "0.25",
                         "--num-classes", "10", "--image-size", str(RES), "--out", converted]) == 0
    assert (epath.Path(converted) / "checkpoints" / "0").is_dir()
    data_dir = str(tmp_path / "tfds")
    capsys.readouterr()
    with _mock_imagenet(data_dir):
        assert evaluate.main(["--checkpoint", converted, "--dataset", "imagenet2012",
                              "--data-dir", data_dir, "--batch-size", "8"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_examples"] == NUM_EXAMPLES and result["step"] == 0
    assert result["model"] == NAME and result["image_size"] == RES
    assert os.listdir(cwd) == []
    assert _no_uri_folders(str(tmp_path), REPO) == []


def test_appending_to_a_bucket_object_rewrites_it_once_per_flush_not_per_line(gcs, monkeypatch):
    """Object stores have no append: each write of metrics.jsonl in a bucket rewrites the
    object. The appender buffers lines and writes once per flush; its earlier text is read
    once. A local file is appended to at once."""
    from mobilenet_jax import paths

    target = paths.resolve(f"gs://{BUCKET}/append/metrics.jsonl")
    cls = type(target)
    writes, reads = [], []
    real_write, real_read = cls.write_text, cls.read_text
    monkeypatch.setattr(cls, "write_text", lambda self, text, *a, **k: (writes.append(len(text)),
                                                                        real_write(self, text, *a, **k))[1])
    monkeypatch.setattr(cls, "read_text", lambda self, *a, **k: (reads.append(1), real_read(self, *a, **k))[1])
    real_write(target, "old\n")

    out = paths.TextAppender(target, interval=3600.0)
    lines = [f"line {i}\n" for i in range(50)]
    for line in lines:
        out.write(line)
    assert writes == [] and real_read(target) == "old\n"  # buffered, nothing rewritten yet
    out.flush()
    assert len(writes) == 1 and real_read(target) == "old\n" + "".join(lines)
    out.write("more\n")
    out.flush()
    out.flush()  # nothing pending: no write
    assert len(writes) == 2 and len(reads) == 1  # the object was read once, at the first flush
    assert real_read(target) == "old\n" + "".join(lines) + "more\n"

    eager = paths.TextAppender(target, interval=0.0)  # due at every line
    eager.write("a\n")
    eager.write("b\n")
    assert len(writes) == 4 and real_read(target).endswith("more\na\nb\n")


def test_appending_to_a_local_file_is_immediate(tmp_path):
    from mobilenet_jax import paths

    out = paths.TextAppender(tmp_path / "m.jsonl", interval=3600.0)
    out.write("x\n")
    out.write("y\n")
    assert (tmp_path / "m.jsonl").read_text() == "x\ny\n"
