"""The task seam (mobilenet_jax/tasks): the registries, the one choice of a run's task, the
classification loss, the best checkpoint kept by the task's metric, and a task that joins by
registration alone, trained and evaluated exactly by the task-blind trainer."""
import subprocess
import sys
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax import lax

from tests._train_helpers import REPO, tiny_config
from mobilenet_jax import tasks
from mobilenet_jax.data import ArrayDataset, DatasetInfo, HostLayout
from mobilenet_jax.data.pipeline import AXIS
from mobilenet_jax.models import registry
from mobilenet_jax.models.common import Network
from mobilenet_jax.tasks.classification import ClassificationTask, smoothed_cross_entropy
from mobilenet_jax.train import ConfigError, TrainState, read_metrics, train_and_evaluate, validate_config
from mobilenet_jax.train import config as train_config
from mobilenet_jax.train.checkpoint import Checkpoints


def test_label_smoothing():
    logits = jnp.asarray([[2.0, 0.0, -1.0, 0.5]])
    labels = jnp.asarray([0])
    logp = jax.nn.log_softmax(logits)[0]
    target = np.full(4, 0.1 / 4) + np.eye(4)[0] * 0.9
    np.testing.assert_allclose(smoothed_cross_entropy(logits, labels, 0.1)[0], -(target * logp).sum(), rtol=1e-6)
    np.testing.assert_allclose(smoothed_cross_entropy(logits, labels)[0], -logp[0], rtol=1e-6)


def test_models_register_without_importing_the_detectors_package():
    """`import mobilenet_jax.models` imports no detection module until a lookup, and the lookup
    finds the detector (the registry imports MODEL_MODULES itself)."""
    code = ("import sys, mobilenet_jax.models as m; "
            "before = any(k.startswith('mobilenet_jax.detection') for k in sys.modules); "
            "print(before, 'ssdlite' in m.list_models(), type(m.create_model('ssdlite')).__name__, "
            "m.model_task('ssdlite'), m.model_task('mobilenet_v2'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "SSDLite", "detection", "classification"]


def test_the_task_of_a_run_is_the_models_and_must_be_the_data_sets():
    assert train_config.check_task("mobilenet_v2", "cifar10") == "classification"
    assert train_config.check_task("ssdlite", "coco/2017") == "detection"
    assert train_config.check_task("lraspp", "cityscapes/semantic_segmentation") == "segmentation"
    with pytest.raises(ConfigError, match="do not make a task: 'embedded_detection' is a detection data set "
                                          "and 'xception' a classification model"):
        train_config.check_task("xception", "embedded_detection")
    config = tiny_config(model="ssdlite", model_kwargs={"backbone": "mobilenet_v1", "width": 0.25})
    with pytest.raises(ConfigError, match="use a detection data set \\['embedded_detection', 'coco/2017'\\]"):
        validate_config(config, num_devices=1)
    assert tasks.list_tasks() == ["classification", "detection", "segmentation"]
    assert tasks.get_task("detection").best_metric == "AP"
    assert tasks.get_task("segmentation").best_metric == "mean_iou"
    with pytest.raises(KeyError, match="no task 'depth'"):
        tasks.get_task("depth")


def _tiny_state(value: float) -> TrainState:
    return TrainState(step=jnp.asarray(0, jnp.int32), params={"w": jnp.full((2,), value)},
                      batch_stats={}, opt_state=(), ema_params=None)


def test_best_checkpoint_is_kept_by_the_tasks_metric_and_reads_old_accuracy_files(tmp_path):
    """A detector's best/ written before the metric was stored by name ({"accuracy": AP}) is
    compared by its AP: a worse new AP leaves it, a better one replaces it."""
    old = ocp.CheckpointManager(tmp_path / "best", options=ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda m: m["accuracy"], best_mode="max", create=True,
        enable_async_checkpointing=False))
    old.save(1, args=ocp.args.StandardSave({"w": np.zeros(2)}), metrics={"accuracy": 0.5})
    old.close()
    ckpts = Checkpoints(tmp_path, best_metric="AP")
    try:
        ckpts.save_best(_tiny_state(1.0).replace(step=jnp.asarray(2)), {"AP": 0.3, "AP50": 0.9})
        assert ckpts._best.all_steps() == [1]
        ckpts.save_best(_tiny_state(2.0).replace(step=jnp.asarray(3)), {"AP": 0.7, "AP50": 0.8})
        assert ckpts._best.all_steps() == [3]
        with pytest.raises(KeyError, match="lack the best-checkpoint metric 'AP'"):
            ckpts.save_best(_tiny_state(3.0).replace(step=jnp.asarray(4)), {"accuracy": 0.9})
    finally:
        ckpts.close()
    manager = ocp.CheckpointManager(tmp_path / "best")
    assert manager.metrics(3) == {"AP": 0.7, "AP50": 0.8}
    manager.close()


# A third task, registered from outside the package: regress each image's mean brightness.

class Brightness(Network):
    """Mean-pooled pixels -> one linear output: the image's predicted mean brightness."""

    task: ClassVar[str] = "brightness"

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = self.check_inputs(x)
        return nn.Dense(1, name="head")(jnp.mean(x, axis=(1, 2)))[:, 0].astype(jnp.float32)


class BrightnessTask:
    """Squared error against batch["target"]; exact MSE over the split; best by -MSE."""

    best_metric = "neg_mse"
    batch_keys = ("image", "target")

    def __init__(self, model):
        self.model = model

    @classmethod
    def from_config(cls, config, model):
        return cls(model)

    def loss_fn(self):
        return lambda pred, batch: (jnp.mean((pred - batch["target"]) ** 2), {})

    def eval_step(self):
        def step(variables, batch):
            err = (self.model.apply(variables, batch["image"]) - batch["target"]) ** 2
            mask = batch["mask"].astype(jnp.float32)
            return lax.psum({"sse": jnp.sum(err * mask), "count": jnp.sum(mask)}, AXIS)

        return step

    def reduce(self, outputs):
        sse = count = 0.0
        for _, out in outputs:
            out = jax.device_get(out)
            sse, count = sse + float(out["sse"][0]), count + float(out["count"][0])
        return {"mse": sse / count, "neg_mse": -sse / count, "num_examples": int(count)}


def _brightness_split(n, seed):
    images = np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)
    images *= np.linspace(0.2, 1.0, n, dtype=np.float32)[:, None, None, None]
    return {"image": images, "target": images.mean(axis=(1, 2, 3))}


def test_a_task_registered_from_outside_trains_and_evaluates_exactly(tmp_path, monkeypatch):
    """Registration only (a model with `task`, the task class, a data set name in DATASET_TASKS):
    the trainer's loss, evaluation (prefetched, 40 examples in padded batches of 16 on 2
    devices), plateau history and best checkpoint all follow the new task."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._registered()))
    monkeypatch.setattr(tasks, "_TASKS", dict(tasks._registered()))
    monkeypatch.setitem(train_config.DATASET_TASKS, "brightness_toy", "brightness")
    registry.register("brightness_net")(Brightness)
    tasks.register_task("brightness")(BrightnessTask)

    train, evals = _brightness_split(64, 0), _brightness_split(40, 1)
    config = tiny_config(model="brightness_net", dataset="brightness_toy", num_devices=2,
                         model_kwargs={"width": 1.0}, optimizer="adam", learning_rate=0.05,
                         lr_schedule="constant", label_smoothing=0.0, ema_decay=0.0, weight_decay=0.0,
                         num_train_steps=8, eval_every_steps=4, checkpoint_every_steps=0,
                         progress_bar=False, tensorboard=False)
    layout = HostLayout(0, 1, 2)
    info = DatasetInfo("brightness_toy", 64, 40, 1, 32)
    data = ArrayDataset(info, train, evals, batch_size=16, eval_batch_size=16, seed=0, layout=layout)
    result = train_and_evaluate(config, str(tmp_path), dataset=data)
    assert result["step"] == 8 and "eval_accuracy" not in result
    # The evaluation is the task's, exact over the 40 real examples of the final state.
    state = jax.device_get(result["state"])
    pred = Brightness(num_classes=1).apply({"params": state.params}, evals["image"])
    np.testing.assert_allclose(result["eval_mse"], np.mean((pred - evals["target"]) ** 2), rtol=1e-5)
    assert result["eval_num_examples"] == 40
    # The best checkpoint is kept by the task's metric, stored under its name.
    manager = ocp.CheckpointManager(tmp_path / "best")
    (step,) = manager.all_steps()
    stored = manager.metrics(step)
    manager.close()
    best = max(read_metrics(str(tmp_path), "eval"), key=lambda r: r["neg_mse"])
    assert step == best["step"] and stored["neg_mse"] == pytest.approx(best["neg_mse"])
