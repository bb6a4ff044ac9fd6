"""Image classification, the trainer's simple case: batches {"image", "label"}; softmax
cross-entropy against labels smoothed as in Inception-v3 Sec. 7; exact loss, top-1 and top-5
accuracy over the evaluation split; the best checkpoint by top-1 ("accuracy")."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from mobilenet_jax.data.pipeline import AXIS, Batch
from mobilenet_jax.tasks import EvalStep, LossFn, Metrics, register_task


def smoothed_cross_entropy(
    logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0
) -> jax.Array:
    """Per-example softmax cross-entropy (float32) against labels smoothed as in
    Inception-v3 Sec. 7: (1 - e) * onehot + e / K."""
    logits = logits.astype(jnp.float32)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing > 0:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    return optax.softmax_cross_entropy(logits, onehot)


@register_task("classification")
@dataclasses.dataclass(frozen=True)
class ClassificationTask:
    """Classification by `model` (logits [n, classes]) with `label_smoothing` in training."""

    model: nn.Module
    label_smoothing: float = 0.0

    best_metric: ClassVar[str] = "accuracy"
    batch_keys: ClassVar[tuple[str, ...]] = ("image", "label")

    @classmethod
    def from_config(cls, config, model: nn.Module) -> ClassificationTask:
        return cls(model, config.label_smoothing)

    def loss_fn(self) -> LossFn:
        """Mean smoothed cross-entropy of the logits against batch["label"], and top-1 accuracy."""
        smoothing = self.label_smoothing

        def loss_fn(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
            loss = jnp.mean(smoothed_cross_entropy(logits, batch["label"], smoothing))
            return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

        return loss_fn

    def eval_step(self) -> EvalStep:
        """Sums over the devices (psum) of the unsmoothed loss, top-1/top-5 hits and real
        examples of the masked batch; `reduce` divides by "count" for exact means."""

        def eval_step(variables: dict, batch: Batch) -> Metrics:
            logits = self.model.apply(variables, batch["image"], train=False).astype(jnp.float32)
            mask = batch["mask"].astype(jnp.float32)
            labels = batch["label"]
            loss = smoothed_cross_entropy(logits, labels)
            top5 = lax.top_k(logits, min(5, logits.shape[-1]))[1]
            sums = {
                "loss": jnp.sum(loss * mask),
                "correct": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
                "correct_top5": jnp.sum(jnp.any(top5 == labels[:, None], -1) * mask),
                "count": jnp.sum(mask),
            }
            return lax.psum(sums, AXIS)

        return eval_step

    def reduce(self, outputs: Iterable[tuple[Batch, Any]]) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy over the split, and its number of real examples
        ({} for an empty split). The sums stay on the device until the end."""
        sums = None
        for _, out in outputs:
            sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
        if sums is None:
            return {}
        # Psummed: every device holds the same totals; device 0's.
        sums = jax.tree_util.tree_map(lambda x: x[0], jax.device_get(sums))
        count = max(float(sums["count"]), 1.0)
        return {
            "loss": float(sums["loss"]) / count,
            "accuracy": float(sums["correct"]) / count,
            "top5_accuracy": float(sums["correct_top5"]) / count,
            "num_examples": int(sums["count"]),
        }
