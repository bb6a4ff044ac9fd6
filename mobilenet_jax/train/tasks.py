"""What the trainer needs from a task, and the two tasks: classification (the default) and
detection. The loop, pmap, checkpoints and metrics stay task-blind; a task supplies

- `loss_fn()`: the per-device loss `(model outputs, batch) -> (loss, metrics)` for
  `steps.make_train_step` (it may use collectives over the "batch" axis);
- `evaluate(state, dataset, num_devices, prefetch) -> metrics`: one pass over the
  evaluation split, exact (padding masked out);
- `best_metric`: the evaluation metric the best checkpoint is chosen by (higher is better).

The data set decides the task: detection data sets (`DETECTION_DATASETS`, batches in the
layout of `mobilenet_jax.detection.layout`) train a detector, every other one a classifier.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.data import Dataset, prefetch_to_device
from mobilenet_jax.train.config import DETECTION_DATASETS
from mobilenet_jax.train.state import TrainState
from mobilenet_jax.train.steps import (
    LossFn, classification_loss, make_eval_step, pmap_eval_step,
)


class Task(Protocol):
    best_metric: str

    def loss_fn(self) -> LossFn: ...

    def evaluate(self, state: TrainState, dataset: Dataset, num_devices: int, prefetch: int) -> dict: ...


def evaluate_classification(p_eval, state: TrainState, dataset: Dataset, num_devices: int,
                            prefetch: int) -> dict:
    """Exact evaluation over the whole split (padding masked out): loss, top-1, top-5."""
    sums = None
    for batch in prefetch_to_device(dataset.eval_batches(), prefetch, num_devices):
        out = p_eval(state, batch)
        sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
    if sums is None:
        return {}
    sums = jax.device_get(sums)
    count = max(float(sums["count"]), 1.0)
    return {
        "loss": float(sums["loss"]) / count,
        "accuracy": float(sums["correct"]) / count,
        "top5_accuracy": float(sums["correct_top5"]) / count,
        "num_examples": int(sums["count"]),
    }


@dataclasses.dataclass
class ClassificationTask:
    """Image classification: smoothed cross-entropy; loss, top-1 and top-5 accuracy."""

    model: nn.Module
    label_smoothing: float = 0.0
    best_metric: str = "accuracy"

    def __post_init__(self):
        self._p_eval = pmap_eval_step(make_eval_step(self.model))

    def loss_fn(self) -> LossFn:
        return classification_loss(self.label_smoothing)

    def evaluate(self, state, dataset, num_devices, prefetch) -> dict:
        return evaluate_classification(self._p_eval, state, dataset, num_devices, prefetch)


@dataclasses.dataclass
class DetectionTrainerTask:
    """Detection (`mobilenet_jax.detection.task.DetectionTask`) for the trainer: the SSD
    loss; COCO AP, AP50, AP75, per-size AP and AR@100; the best checkpoint by AP."""

    model: nn.Module
    image_size: int
    best_metric: str = "AP"

    def __post_init__(self):
        from mobilenet_jax.detection.task import AXIS, DetectionTask

        self.detection = DetectionTask(self.model, self.image_size)
        step = self.detection.eval_step()
        self._p_eval = jax.pmap(lambda state, batch: step(
            {"params": state.eval_params, "batch_stats": state.batch_stats}, batch),
            axis_name=AXIS, in_axes=(None, 0), out_axes=0)

    def loss_fn(self) -> LossFn:
        return self.detection.loss_fn()

    def evaluate(self, state, dataset, num_devices, prefetch) -> dict:
        # Host batches: the ground truth stays on the host for the COCO evaluator.
        return self.detection.evaluate(lambda b: self._p_eval(state, b), dataset.eval_batches())


def build_task(config, model: nn.Module) -> Task:
    """The task the config's data set calls for."""
    if config.dataset in DETECTION_DATASETS:
        return DetectionTrainerTask(model, config.image_size)
    return ClassificationTask(model, config.label_smoothing)
