"""Figures of segmentation masks: a class palette, masks coloured by it, and rows of
image | ground truth | prediction as a matplotlib figure (for reports and experiments)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from mobilenet_jax.segmentation.layout import IGNORE_LABEL, SegmentationInputError

IGNORE_COLOR = (255, 255, 255)
# Cityscapes' colours of its 19 train classes (cityscapesScripts labels.py), in train-id order.
CITYSCAPES_COLORS = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
], np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8: PASCAL VOC's colour map (class 0 black; the bits of the class
    id spread over the high bits of R, G and B, so neighbouring ids get distinct colours)."""
    ids = np.arange(num_classes)
    colors = np.zeros((num_classes, 3), np.int64)
    for shift in range(8):
        for channel in range(3):
            colors[:, channel] |= ((ids >> (3 * shift + channel)) & 1) << (7 - shift)
    return colors.astype(np.uint8)


def colorize(segmentation: np.ndarray, colors: Optional[np.ndarray] = None, *,
             ignore_label: int = IGNORE_LABEL, ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    """Class ids [..., H, W] -> uint8 RGB [..., H, W, 3]; `colors` [C, 3] (default: the
    palette of max label + 1 classes), `ignore_color` on the ignore label."""
    seg = np.asarray(segmentation)
    valid = seg != ignore_label
    if colors is None:
        colors = palette(int(seg[valid].max()) + 1 if valid.any() else 1)
    colors = np.asarray(colors, np.uint8)
    bad = valid & ((seg < 0) | (seg >= len(colors)))
    if bad.any():
        raise SegmentationInputError(
            f"labels {sorted(set(np.unique(seg[bad]).tolist()))[:8]} have no colour among {len(colors)}: "
            f"pass colors for every class")
    out = colors[np.where(valid, seg, 0)]
    out[~valid] = np.asarray(ignore_color, np.uint8)
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image in [-1, 1] (the batch layout's) as uint8 RGB."""
    return np.round((np.clip(np.asarray(image, np.float32), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def comparison_figure(images: np.ndarray, labels: np.ndarray, predictions: Optional[np.ndarray] = None, *,
                      colors: Optional[np.ndarray] = None, num_classes: Optional[int] = None,
                      ignore_label: int = IGNORE_LABEL, titles: Sequence[str] = ("image", "ground truth", "prediction"),
                      panel_size: float = 2.0):
    """A matplotlib Figure with one row per example: image | ground truth | prediction (the
    last column left out without predictions). images [N, H, W, 3] in [-1, 1]; labels and
    predictions [N, H, W]. Colours: `colors`, else the palette of `num_classes`, else of the
    largest label present."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    images, labels = np.asarray(images), np.asarray(labels)
    if images.shape[:-1] != labels.shape or (predictions is not None and np.shape(predictions) != labels.shape):
        raise SegmentationInputError(
            f"images {images.shape}, labels {labels.shape}"
            f"{'' if predictions is None else f', predictions {np.shape(predictions)}'} must agree pixel for pixel")
    if colors is None:
        if num_classes is None:
            both = labels if predictions is None else np.concatenate([labels.ravel(), np.ravel(predictions)])
            num_classes = int(both[both != ignore_label].max()) + 1 if (both != ignore_label).any() else 1
        colors = palette(num_classes)
    panels = [to_uint8(images), colorize(labels, colors, ignore_label=ignore_label)]
    if predictions is not None:
        panels.append(colorize(predictions, colors, ignore_label=ignore_label))
    rows, cols = len(images), len(panels)
    fig = Figure(figsize=(panel_size * cols, panel_size * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(panels[c][r], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c])
    fig.tight_layout()
    return fig


__all__ = ["CITYSCAPES_COLORS", "IGNORE_COLOR", "colorize", "comparison_figure", "palette", "to_uint8"]
