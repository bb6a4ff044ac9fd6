"""Runs that go wrong: NaN loss, a corrupt checkpoint, and restoring on another device count."""
import itertools
import logging
import os
import re
import shutil

import numpy as np
import pytest

from tests._train_helpers import TINY_CONFIG, assert_trees_close, load_checkpoint, tiny_config
from tests.conftest import TEST_CACHE_DIR
from mobilenet_jax.data import HostLayout, build_dataset
from mobilenet_jax.train import NonFiniteLossError, read_metrics, train_and_evaluate

FAST = dict(num_eval_steps=0, eval_every_steps=0, num_devices=1, keep_best_checkpoint=False)


class PoisonedAfter:
    """The tiny data set, with NaN images from step `bad_step` on (1-based step numbers)."""

    def __init__(self, dataset, bad_step):
        self.dataset, self.bad_step, self.info = dataset, bad_step, dataset.info

    def train_batches(self, start_step):
        for step, batch in zip(itertools.count(start_step + 1), self.dataset.train_batches(start_step)):
            if step >= self.bad_step:
                batch = dict(batch, image=np.full_like(batch["image"], np.nan))
            yield batch

    def eval_batches(self):
        return self.dataset.eval_batches()


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(num_train_steps=8, checkpoint_every_steps=2, log_every_steps=4, **FAST)
    data = PoisonedAfter(build_dataset(config, HostLayout(0, 1, 1)), bad_step=5)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5.*checkpoints/4"):
        train_and_evaluate(config, str(tmp_path), dataset=data)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    saved = load_checkpoint(str(tmp_path))
    assert int(saved["step"]) == 4
    assert all(np.isfinite(x).all() for x in __import__("jax").tree_util.tree_leaves(saved["params"]))


def test_corrupt_newest_checkpoint_is_set_aside_and_older_resumes_other_device_count_restores(tmp_path, caplog, capsys):
    workdir = str(tmp_path)
    config = tiny_config(num_train_steps=4, checkpoint_every_steps=4, **dict(FAST, num_devices=2))
    first = train_and_evaluate(config, workdir)
    assert first["step"] == 4
    saved = load_checkpoint(workdir, 4)
    # Resume on 1 device (the checkpoint is unreplicated) and train on to step 6.
    config1 = tiny_config(num_train_steps=6, checkpoint_every_steps=6, **FAST)
    result = train_and_evaluate(config1, workdir)
    assert result["step"] == 6
    steps = [r["step"] for r in read_metrics(workdir, "train")]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 5-6 only, no step trained twice
    assert_trees_close(load_checkpoint(workdir, 4)["params"], saved["params"], rtol=0, atol=0)
    # Damage the newest checkpoint's array data: the re-run warns, renames it aside untouched
    # and resumes from step 4; once every checkpoint is damaged, one error names them.
    def damage(ckpt):
        damaged = 0
        for root, _, files in os.walk(ckpt):
            for name in files:
                if "ocdbt" in root or "/d" in root.replace(str(ckpt), ""):
                    with open(os.path.join(root, name), "r+b") as f:
                        f.write(b"\x00garbage" * 64)
                    damaged += 1
        assert damaged > 0
        return {p.relative_to(ckpt): p.read_bytes() for p in ckpt.rglob("*") if p.is_file()}

    ckpts = tmp_path / "checkpoints"
    damaged_files = damage(ckpts / "6")
    with caplog.at_level(logging.WARNING, logger="mobilenet_jax"):
        again = train_and_evaluate(config1, workdir)
    assert again["step"] == 6
    assert any("renamed it to" in r.message and "resumed from step 4" in r.message for r in caplog.records)
    aside = ckpts / "6.corrupt"
    assert {p.relative_to(aside): p.read_bytes() for p in aside.rglob("*") if p.is_file()} == damaged_files
    assert sorted(os.listdir(ckpts)) == ["4", "6", "6.corrupt"]
    assert [r["step"] for r in read_metrics(workdir, "train")] == [1, 2, 3, 4, 5, 6]
    for step in ("4", "6"):
        damage(ckpts / step)
    # Through the command (its real main, in-process): one error line, exit 1.
    from mobilenet_jax import cli
    from mobilenet_jax.train.__main__ import main

    argv = [f"--config={TINY_CONFIG}", f"--workdir={workdir}", f"--config.compilation_cache_dir={TEST_CACHE_DIR}"]
    argv += [f"--config.{k}={v}" for k, v in dict(FAST, num_train_steps=6, checkpoint_every_steps=6).items()]
    assert cli.run(main, argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.fullmatch(r"error: none of the 2 checkpoint\(s\) in \S+ can be restored \(steps \[6, 4\]\); .*\n",
                        err.splitlines(keepends=True)[-1])
    assert sorted(os.listdir(ckpts)) == ["4", "6", "6.corrupt"]  # nothing renamed or deleted


def test_fresh_start_over_metrics_of_a_lost_run_sets_them_aside(tmp_path, caplog):
    # A run whose checkpoints were deleted (or never committed) starts again from step 0: its
    # metrics.jsonl must read as the new run alone, and the old records must survive elsewhere.
    config = tiny_config(num_train_steps=3, checkpoint_every_steps=3, log_every_steps=1, **FAST)
    train_and_evaluate(config, str(tmp_path))
    old = (tmp_path / "metrics.jsonl").read_text()
    shutil.rmtree(tmp_path / "checkpoints")
    with caplog.at_level(logging.WARNING, logger="mobilenet_jax"):
        train_and_evaluate(tiny_config(num_train_steps=2, checkpoint_every_steps=2, log_every_steps=1, **FAST),
                           str(tmp_path))
    assert [r["step"] for r in read_metrics(str(tmp_path), "train")] == [1, 2]
    assert (tmp_path / "metrics.orphaned-1.jsonl").read_text() == old
    assert any("metrics.orphaned-1.jsonl" in r.message for r in caplog.records)
