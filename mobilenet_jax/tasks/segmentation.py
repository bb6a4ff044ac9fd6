"""Semantic segmentation (LR-ASPP, MobileNetV3 Sec. 6.4; Mobile DeepLabv3, MobileNetV2 Sec. 6.3):
per-pixel softmax cross-entropy, mean IoU from an exactly accumulated confusion matrix, the best
checkpoint by mean IoU.

Batch layout (per device): {"image": [n, S, S, 3], "segmentation": [n, S, S] int32} with
labels 0..num_classes-1 and `IGNORE_LABEL` (255) for pixels that count nowhere (VOC's object
outlines, Cityscapes' void classes), plus "mask" [n] on evaluation batches (False on padding;
see `segmentation.layout`). The loss is the mean over the labelled pixels of the *global* batch
(their count `lax.psum`med), so a data-parallel step equals a single-device step on the same
batch, as detection's matched-anchor normalisation does.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from mobilenet_jax.data.pipeline import AXIS, Batch
from mobilenet_jax.segmentation.layout import IGNORE_LABEL
from mobilenet_jax.segmentation.metrics import SegmentationMetrics, accumulate, confusion_matrix
from mobilenet_jax.tasks import EvalStep, LossFn, Metrics, register_task


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array,
                        ignore_label: int = IGNORE_LABEL) -> tuple[jax.Array, jax.Array]:
    """(sum of the per-pixel softmax cross-entropy over the labelled pixels, their count), in
    float32; logits [n, H, W, C], labels [n, H, W] (ignore_label and labels outside [0, C) count
    nowhere)."""
    num_classes = logits.shape[-1]
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    per_pixel = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.where(valid, labels, 0))
    return jnp.sum(per_pixel * valid), jnp.sum(valid).astype(jnp.float32)


@register_task("segmentation")
@dataclasses.dataclass(frozen=True)
class SegmentationTask:
    """Segmentation by `model` (logits [n, H, W, num_classes] at the label resolution)."""

    model: nn.Module
    ignore_label: int = IGNORE_LABEL

    best_metric: ClassVar[str] = "mean_iou"
    batch_keys: ClassVar[tuple[str, ...]] = ("image", "segmentation")

    @classmethod
    def from_config(cls, config, model: nn.Module) -> SegmentationTask:
        return cls(model)

    def _check_resolution(self, logits: jax.Array, labels: jax.Array) -> None:
        if logits.shape[:-1] != labels.shape:
            raise ValueError(f"{type(self.model).__name__} gives logits {logits.shape} for labels {labels.shape}: "
                             "a segmentation model must predict at the label resolution")

    def loss_fn(self) -> LossFn:
        """Mean cross-entropy over the global batch's labelled pixels, and the local pixel accuracy."""
        ignore = self.ignore_label

        def loss_fn(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
            labels = batch["segmentation"]
            self._check_resolution(logits, labels)
            total, count = pixel_cross_entropy(logits, labels, ignore)
            devices = lax.psum(1, AXIS)
            loss = total * devices / jnp.maximum(lax.psum(count, AXIS), 1.0)
            hits = jnp.sum((jnp.argmax(logits, -1) == labels) & (labels != ignore))
            return loss, {"pixel_accuracy": hits / jnp.maximum(count, 1.0)}

        return loss_fn

    def eval_step(self) -> EvalStep:
        """The batch's confusion matrix, cross-entropy sum, labelled pixels and real images,
        each summed over the devices (psum); padded images count nowhere."""
        ignore = self.ignore_label

        def eval_step(variables: dict, batch: Batch) -> Metrics:
            logits = self.model.apply(variables, batch["image"], train=False).astype(jnp.float32)
            labels, mask = batch["segmentation"], batch["mask"]
            self._check_resolution(logits, labels)
            labels = jnp.where(mask.reshape(mask.shape + (1, 1)), labels, ignore)
            total, count = pixel_cross_entropy(logits, labels, ignore)
            matrix = confusion_matrix(labels, jnp.argmax(logits, -1), logits.shape[-1],
                                      ignore_label=ignore)
            return lax.psum({"confusion": matrix, "loss": total, "pixels": count,
                             "count": jnp.sum(mask.astype(jnp.float32))}, AXIS)

        return eval_step

    def reduce(self, outputs: Iterable[tuple[Batch, Any]]) -> dict[str, float]:
        """Mean IoU, pixel accuracy, mean class accuracy, per-class IoU ("iou/<class>") and the
        loss per labelled pixel over the split ({} for an empty split). The confusion matrix is
        summed on the host in int64 (a Cityscapes split holds ~10^9 pixels)."""
        matrix, loss, pixels, count = None, 0.0, 0.0, 0
        for _, out in outputs:
            out = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], jax.device_get(out))  # psummed
            matrix = accumulate(matrix, out["confusion"])
            loss, pixels, count = loss + float(out["loss"]), pixels + float(out["pixels"]), count + int(out["count"])
        if matrix is None:
            return {}
        metrics = SegmentationMetrics.from_confusion(matrix).as_dict()
        # A class absent from both the labels and the predictions has no IoU (NaN): left out.
        metrics = {k: v for k, v in metrics.items() if not (k.startswith("iou/") and np.isnan(v))}
        return {**metrics, "loss": loss / max(pixels, 1.0), "num_examples": count}


__all__ = ["SegmentationTask", "pixel_cross_entropy"]
