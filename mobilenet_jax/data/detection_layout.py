"""The fixed-size batch layout of detection data, and the checks that guard it.

A detection batch is `{"image": [N, S, S, 3] float32 in [-1, 1], "boxes": [N, M, 4] float32
(x1, y1, x2, y2) normalised to [0, 1], "labels": [N, M] int32 in 1..C (0 on padding),
"box_mask": [N, M] bool (False on padding)}`: M (`max_boxes`) slots per image, the real
objects first. Decided behaviours:

- an image with no objects is valid (all slots padding): it teaches background only
  (`loss.MIN_NEGATIVES` hard negatives) and adds no ground truth to the evaluation;
- more objects than M: `pack` raises, or with `overflow="keep_largest"` keeps the M largest
  (the tfds COCO pipeline does this; COCO has at most 93 objects per image, M = 100);
- boxes outside [0, 1], with x2 < x1 or y2 < y1, or of zero size, labels out of 1..C, or
  arrays of the wrong shape raise `DetectionInputError` (a `ValueError`, and a `UserError`:
  a command prints it as one `error: ...` line) naming the image and the box;
- evaluation batches may carry "is_crowd" [N, M] (COCO's crowd annotations, ignore regions).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from mobilenet_jax.errors import UserError

_TOLERANCE = 1e-6


class DetectionInputError(UserError, ValueError):
    """Detection data that breaks the batch layout (shapes, box coordinates, labels)."""


def check_boxes(boxes: np.ndarray, labels: np.ndarray, num_classes: int, where: str = "") -> None:
    """Raises on boxes [K, 4] / labels [K] that break the layout's rules."""
    boxes, labels = np.asarray(boxes), np.asarray(labels)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise DetectionInputError(f"{where}boxes must have shape [num_objects, 4] (x1, y1, x2, y2), got {boxes.shape}")
    if labels.shape != boxes.shape[:1]:
        raise DetectionInputError(f"{where}labels must have shape [{boxes.shape[0]}] (one per box), got {labels.shape}")
    if not np.isfinite(boxes).all():
        raise DetectionInputError(f"{where}boxes contain NaN or infinity")
    outside = np.nonzero(((boxes < -_TOLERANCE) | (boxes > 1 + _TOLERANCE)).any(-1))[0]
    if outside.size:
        raise DetectionInputError(f"{where}box {outside[0]} {boxes[outside[0]].tolist()} lies outside the image: "
                         "coordinates are fractions of the image in [0, 1]; clip boxes to the image "
                         "first (np.clip(boxes, 0, 1))")
    flipped = np.nonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))[0]
    if flipped.size:
        raise DetectionInputError(f"{where}box {flipped[0]} {boxes[flipped[0]].tolist()} has x2 < x1 or y2 < y1: "
                         "boxes are (x1, y1, x2, y2), not (x, y, w, h) or (y1, x1, y2, x2)")
    empty = np.nonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))[0]
    if empty.size:
        raise DetectionInputError(f"{where}box {empty[0]} {boxes[empty[0]].tolist()} has zero width or height; "
                         "drop such boxes before packing")
    bad = np.nonzero((labels < 1) | (labels > num_classes))[0]
    if bad.size:
        raise DetectionInputError(f"{where}label {labels[bad[0]]} of box {bad[0]} is outside 1..{num_classes} "
                         "(0 is the background and padding)")


def pack(boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray], max_boxes: int,
         num_classes: int, overflow: Literal["error", "keep_largest"] = "error"):
    """Per-image box lists -> (boxes [N, M, 4], labels [N, M], box_mask [N, M]), checked."""
    if len(boxes) != len(labels):
        raise DetectionInputError(f"{len(boxes)} box arrays but {len(labels)} label arrays")
    n = len(boxes)
    out_boxes = np.zeros((n, max_boxes, 4), np.float32)
    out_labels = np.zeros((n, max_boxes), np.int32)
    mask = np.zeros((n, max_boxes), bool)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        b = np.asarray(b, np.float32).reshape(-1, 4) if np.size(b) == 0 else np.asarray(b, np.float32)
        l = np.asarray(l, np.int32).reshape(-1)
        check_boxes(b, l, num_classes, where=f"image {i}: ")
        if len(b) > max_boxes:
            if overflow != "keep_largest":
                raise DetectionInputError(f"image {i} has {len(b)} objects but the layout holds max_boxes="
                                 f"{max_boxes}; raise max_boxes or pass overflow='keep_largest'")
            keep = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")[:max_boxes]
            b, l = b[np.sort(keep)], l[np.sort(keep)]
        out_boxes[i, : len(b)], out_labels[i, : len(b)], mask[i, : len(b)] = b, l, True
    return out_boxes, out_labels, mask


def check_batch(batch: dict, num_classes: int, image_size: int | None = None) -> None:
    """Raises if a (flat, [N, ...]) detection batch breaks the layout."""
    missing = {"image", "boxes", "labels", "box_mask"} - set(batch)
    if missing:
        raise DetectionInputError(f"detection batch lacks {sorted(missing)}; it needs image, boxes, labels, box_mask")
    image, boxes = np.asarray(batch["image"]), np.asarray(batch["boxes"])
    labels, mask = np.asarray(batch["labels"]), np.asarray(batch["box_mask"])
    if image.ndim != 4 or image.shape[-1] != 3:
        raise DetectionInputError(f"images must be [N, H, W, 3], got {image.shape}")
    if image_size is not None and image.shape[1:3] != (image_size, image_size):
        raise DetectionInputError(f"images are {image.shape[1]}x{image.shape[2]}, expected {image_size}x{image_size}")
    n = image.shape[0]
    if boxes.ndim != 3 or boxes.shape[0] != n or boxes.shape[-1] != 4:
        raise DetectionInputError(f"boxes must be [N={n}, max_boxes, 4], got {boxes.shape}")
    if labels.shape != boxes.shape[:2] or mask.shape != boxes.shape[:2]:
        raise DetectionInputError(f"labels {labels.shape} and box_mask {mask.shape} must be {boxes.shape[:2]}")
    if "is_crowd" in batch and np.shape(batch["is_crowd"]) != boxes.shape[:2]:
        raise DetectionInputError(f"is_crowd {np.shape(batch['is_crowd'])} must be {boxes.shape[:2]}")
    for i in range(n):
        check_boxes(boxes[i][mask[i]], labels[i][mask[i]], num_classes, where=f"image {i}: ")
