"""The metric writer: metrics.jsonl records, TensorBoard scalars through TensorFlow's public
summary API, and the truncation a resumed run starts with."""
import math

import numpy as np

from mobilenet_jax.train.metrics import MetricWriter, read_metrics


def _scalars(logdir):
    import tensorflow as tf

    out = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                out[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
    return out


def test_metric_writer_writes_records_and_tensorboard_scalars(tmp_path):
    writer = MetricWriter(tmp_path)
    writer.write(1, "train", {"loss": np.float32(2.5), "lr": 0.1})
    writer.write(2, "train", {"loss": 2.0, "lr": 0.05})
    writer.write(2, "eval", {"accuracy": 0.75, "loss": math.nan})
    writer.close()
    assert read_metrics(tmp_path, "train") == [{"step": 1, "split": "train", "loss": 2.5, "lr": 0.1},
                                               {"step": 2, "split": "train", "loss": 2.0, "lr": 0.05}]
    assert read_metrics(tmp_path, "eval") == [{"step": 2, "split": "eval", "accuracy": 0.75, "loss": "nan"}]
    scalars = _scalars(tmp_path / "tensorboard")
    assert scalars == {("train/loss", 1): 2.5, ("train/lr", 1): np.float32(0.1),
                       ("train/loss", 2): 2.0, ("train/lr", 2): np.float32(0.05),
                       ("eval/accuracy", 2): 0.75}  # NaN is left out of the events


def test_truncate_after_drops_the_records_past_the_checkpoint(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        writer.write(step, "train", {"loss": float(step)})
    writer.truncate_after(2)
    writer.write(3, "train", {"loss": 30.0})
    writer.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert not (tmp_path / "tensorboard").exists()
