"""SSD default boxes (anchors), as the SSD paper (Liu et al. 2016, Sec. 2.2) and the TF object
detection API's `ssd_anchor_generator` that SSDLite is trained with (MobileNetV2 Sec. 6.2)
define them.

Feature map k of m (k = 0..m-1) has scale s_k = min_scale + (max_scale - min_scale) k / (m - 1)
(0.2 ... 0.95 over 6 maps) and, at every cell centre ((i + 0.5) / size), one box per aspect
ratio a with width s_k sqrt(a) and height s_k / sqrt(a), plus one more square box of scale
sqrt(s_k s_{k+1}) (s_m = 1). The first map, as in the TF API's `reduce_boxes_in_lowest_layer`,
has only three boxes: (0.1, 1), (s_0, 2), (s_0, 1/2).

Boxes are (x1, y1, x2, y2) normalised to [0, 1] of the image, the layout used throughout
`mobilenet_jax.detection`; anchors are not clipped to the image (as in the TF API).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Aspect ratios (width / height) of the TF API's SSDLite configs: 1, 2, 1/2, 3, 1/3.
ASPECT_RATIOS: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
MIN_SCALE, MAX_SCALE = 0.2, 0.95


def layer_boxes(num_layers: int, min_scale: float = MIN_SCALE, max_scale: float = MAX_SCALE,
                aspect_ratios: Sequence[float] = ASPECT_RATIOS,
                reduce_lowest: bool = True) -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) of every box of every cell, per feature map."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
    if num_layers == 1:
        scales = [min_scale]
    else:
        scales = [min_scale + (max_scale - min_scale) * k / (num_layers - 1) for k in range(num_layers)]
    scales.append(1.0)
    out = []
    for k in range(num_layers):
        if k == 0 and reduce_lowest:
            out.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
            continue
        boxes = [(scales[k], a) for a in aspect_ratios]
        boxes.append((math.sqrt(scales[k] * scales[k + 1]), 1.0))
        out.append(boxes)
    return out


def anchors_per_cell(num_layers: int, **kwargs) -> list[int]:
    """How many anchors each cell of each feature map has (3, 6, 6, ... by default)."""
    return [len(b) for b in layer_boxes(num_layers, **kwargs)]


def generate_anchors(feature_sizes: Sequence[tuple[int, int]], **kwargs) -> np.ndarray:
    """Anchors [A, 4] (x1, y1, x2, y2) for feature maps of the given (height, width), in the
    order the predictors emit them: map by map, row by row, cell by cell, box by box."""
    per_layer = layer_boxes(len(feature_sizes), **kwargs)
    out = []
    for (h, w), boxes in zip(feature_sizes, per_layer):
        cy, cx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        sizes = np.array([(s * math.sqrt(a), s / math.sqrt(a)) for s, a in boxes])  # [k, (w, h)]
        centres = np.stack([cx, cy], -1).reshape(h * w, 1, 2)
        half = sizes[None] / 2
        out.append(np.concatenate([centres - half, centres + half], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)
