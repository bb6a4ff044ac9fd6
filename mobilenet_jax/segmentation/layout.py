"""The segmentation batch layout and its checks.

A batch (flat, [N, ...]) is {"image": [N, H, W, 3] float32 in [-1, 1], "segmentation":
[N, H, W] int32}: per-pixel class ids in [0, num_classes) (0 is the background where a data
set has one), and IGNORE_LABEL on pixels that count for no class (object boundaries, as VOC
marks them; Cityscapes' void classes; the padding of a crop). Host batches of a data set carry
a leading device axis, [local_devices, per_device, ...] (data/pipeline.py), and evaluation
batches a "mask" [N] that is False on padded images.
"""
from __future__ import annotations

import numpy as np

from mobilenet_jax.errors import UserError

IGNORE_LABEL = 255


class SegmentationInputError(UserError, ValueError):
    """Images and masks that break the layout: shapes that disagree, labels out of range."""


def check_labels(segmentation: np.ndarray, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 where: str = "") -> None:
    """Raises unless every label is in [0, num_classes) or `ignore_label`."""
    seg = np.asarray(segmentation)
    if not np.issubdtype(seg.dtype, np.integer):
        raise SegmentationInputError(f"{where}segmentation masks must hold integer class ids, got dtype {seg.dtype}")
    bad = ((seg < 0) | (seg >= num_classes)) & (seg != ignore_label)
    if bad.any():
        values = np.unique(seg[bad])
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise SegmentationInputError(
            f"{where}segmentation labels {shown} are outside [0, {num_classes}) and not the ignore label "
            f"{ignore_label} ({int(bad.sum())} pixels): map them to a class or to {ignore_label}, or raise num_classes")


def check_example(image: np.ndarray, segmentation: np.ndarray, num_classes: int,
                  ignore_label: int = IGNORE_LABEL, where: str = "") -> None:
    """Raises unless `segmentation` [H, W] (or [N, H, W]) matches `image` [H, W, C] (or
    [N, H, W, C]) pixel for pixel and holds valid labels."""
    image_shape, seg_shape = np.shape(image), np.shape(segmentation)
    if len(image_shape) != len(seg_shape) + 1 or image_shape[:-1] != seg_shape:
        raise SegmentationInputError(
            f"{where}segmentation mask has shape {seg_shape} but its image has shape {image_shape}: the mask "
            f"needs one class id per image pixel, shape {image_shape[:-1]} (resize both together, the mask "
            f"with nearest-neighbour)")
    check_labels(segmentation, num_classes, ignore_label, where)


def check_batch(batch: dict, num_classes: int, image_size: int | None = None,
                ignore_label: int = IGNORE_LABEL) -> None:
    """Raises if a batch (flat [N, ...] or host [D, N/D, ...]) breaks the layout."""
    missing = {"image", "segmentation"} - set(batch)
    if missing:
        raise SegmentationInputError(f"segmentation batch lacks {sorted(missing)}; it needs image and segmentation")
    image = np.asarray(batch["image"])
    if image.ndim not in (4, 5) or image.shape[-1] != 3:
        raise SegmentationInputError(f"images must be [N, H, W, 3] (or [D, N, H, W, 3]), got {image.shape}")
    if image_size is not None and image.shape[-3:-1] != (image_size, image_size):
        raise SegmentationInputError(
            f"images are {image.shape[-3]}x{image.shape[-2]}, expected {image_size}x{image_size}")
    check_example(image, batch["segmentation"], num_classes, ignore_label)
    if "mask" in batch and np.shape(batch["mask"]) != image.shape[:-3]:
        raise SegmentationInputError(f"mask {np.shape(batch['mask'])} must be {image.shape[:-3]}, one flag per image")
