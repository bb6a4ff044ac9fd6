"""Segmentation metrics from a confusion matrix: exact integer counts on each device, summed
over devices and batches, reduced on the host.

`confusion_matrix` runs inside the per-device eval step: rows are the ground-truth class,
columns the predicted one; pixels labelled IGNORE_LABEL and the pixels of padded images
(batch "mask" False) count nowhere. With `axis_name` the matrix is psummed over that pmap
axis, so every device returns the global count of the batch. Sum the per-batch matrices on the
host in int64 (`accumulate`): a Cityscapes eval holds about 10^9 pixels, near int32's limit.

`SegmentationMetrics.from_confusion` gives pixel accuracy, mean class accuracy, per-class IoU
and mean IoU. As in the standard mIoU (Cityscapes', DeepLab's), a class absent from both the
ground truth and the predictions (union 0) has no IoU (NaN) and is left out of the mean; a class
that is predicted but never present has IoU 0 and counts.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.segmentation.layout import IGNORE_LABEL


def confusion_matrix(labels: jax.Array, predictions: jax.Array, num_classes: int, *,
                     mask: Optional[jax.Array] = None, ignore_label: int = IGNORE_LABEL,
                     axis_name: Optional[str] = None) -> jax.Array:
    """[num_classes, num_classes] int32 counts of (ground truth, prediction) pixel pairs.

    labels, predictions: [N, H, W] integer class ids (predictions in [0, num_classes), e.g.
    the argmax of the logits); mask: [N] bool, False on padded images. Labels outside
    [0, num_classes) (the ignore label among them) are not counted. With `axis_name`, summed
    over that pmap axis."""
    labels = jnp.asarray(labels).astype(jnp.int32)
    predictions = jnp.asarray(predictions).astype(jnp.int32)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} must have one shape")
    valid = (labels != ignore_label) & (labels >= 0) & (labels < num_classes)
    if mask is not None:
        mask = jnp.asarray(mask).astype(bool)
        valid &= mask.reshape(mask.shape + (1,) * (labels.ndim - mask.ndim))
    index = jnp.where(valid, labels * num_classes + predictions, num_classes * num_classes)
    counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index.reshape(-1)].add(1, mode="drop")
    matrix = counts.reshape(num_classes, num_classes)
    return jax.lax.psum(matrix, axis_name) if axis_name is not None else matrix


def accumulate(total: Optional[np.ndarray], matrix) -> np.ndarray:
    """`total + matrix` in int64 on the host (`total` None starts a sum). A pmapped matrix
    [devices, C, C] that was psummed holds the same counts on every device: pass one of them."""
    matrix = np.asarray(matrix, np.int64)
    return matrix if total is None else total + matrix


@dataclasses.dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics of a summed confusion matrix (rows: ground truth, columns: prediction)."""

    pixel_accuracy: float
    mean_accuracy: float  # mean over the classes present in the ground truth of their recall
    mean_iou: float  # mean over the classes present in the ground truth or the predictions
    per_class_iou: tuple[float, ...]  # NaN for a class absent from both
    num_pixels: int

    @classmethod
    def from_confusion(cls, matrix) -> "SegmentationMetrics":
        m = np.asarray(matrix, np.int64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"a confusion matrix is square [C, C], got shape {m.shape}")
        tp = np.diag(m).astype(np.float64)
        truth, predicted = m.sum(1).astype(np.float64), m.sum(0).astype(np.float64)
        union = truth + predicted - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            recall = np.where(truth > 0, tp / truth, np.nan)
        total = int(m.sum())
        present = union > 0
        return cls(
            pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
            mean_accuracy=float(np.mean(recall[truth > 0])) if (truth > 0).any() else float("nan"),
            mean_iou=float(np.mean(iou[present])) if present.any() else float("nan"),
            per_class_iou=tuple(float(v) for v in iou),
            num_pixels=total,
        )

    def as_dict(self, prefix: str = "", class_names: Optional[tuple[str, ...]] = None) -> dict[str, float]:
        """Flat scalars for the metric writers: mean_iou, pixel_accuracy, mean_accuracy and
        iou/<class name or index>."""
        names = class_names or tuple(str(i) for i in range(len(self.per_class_iou)))
        if len(names) != len(self.per_class_iou):
            raise ValueError(f"{len(names)} class names for {len(self.per_class_iou)} classes")
        out = {f"{prefix}mean_iou": self.mean_iou, f"{prefix}pixel_accuracy": self.pixel_accuracy,
               f"{prefix}mean_accuracy": self.mean_accuracy}
        out.update({f"{prefix}iou/{n}": v for n, v in zip(names, self.per_class_iou)})
        return out


__all__ = ["SegmentationMetrics", "accumulate", "confusion_matrix"]
