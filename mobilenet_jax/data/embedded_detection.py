"""An embedded object-detection data set drawn in numpy: no download, no TensorFlow.

Each image has a random background colour and 1..`max_objects` shapes of the ten classes of
`embedded` (disk, ring, square, ...), each of a random size (`min_size`..`max_size` of the
image side), position and contrasting colour, placed so that no two boxes overlap by more
than a tenth of the smaller one. Boxes are the exact extent of each drawn shape (its anti-aliased pixels above
half coverage); labels are 1..10 (0 is the background). With `masks=True` the per-object
masks (for later segmentation heads) come along as "masks" [n, M, S, S] bool.
Deterministic: the same (split, size, resolution, seed) always gives the same arrays.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from mobilenet_jax.data.embedded import CLASS_NAMES, NUM_CLASSES, signed_distance
from mobilenet_jax.data.detection_layout import pack

_SPLIT_SEEDS = {"train": 10, "eval": 11, "validation": 12}
MAX_BOXES = 8  # object slots per image unless a config says otherwise
NOISE = (0.02, 0.05)  # (min, max) pixel-noise s.d. of an image


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area (a small box inside a big one counts fully)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / smaller if smaller > 0 else 0.0


class Shape(NamedTuple):
    """One drawn shape: its box [4] (x0, y0, x1, y1 in [0, 1]), label (1..len(classes)), the
    pixels it covers [S, S] (anti-aliased coverage above half) and its signed distance [S, S]
    (in [-1, 1] image units, > 0 inside; the outline is where it crosses 0)."""

    box: np.ndarray
    label: int
    inside: np.ndarray
    signed_distance: np.ndarray


def draw_scene(rng: np.random.Generator, image_size: int, max_objects: int, min_size: float,
               max_size: float, classes: Sequence[int] = tuple(range(NUM_CLASSES))
               ) -> tuple[np.ndarray, list[Shape]]:
    """The noiseless image [S, S, 3] in [-1, 1] and its shapes in drawing order (a later shape
    covers an earlier one): the scene every embedded detection and segmentation image is."""
    s = image_size
    grid = (np.arange(s) + 0.5) / s * 2.0 - 1.0
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    pix = 2.0 / s
    bg = rng.uniform(-1.0, 1.0, 3)
    img = np.broadcast_to(bg, (s, s, 3)).copy()
    shapes: list[Shape] = []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            label = int(rng.integers(len(classes)))
            cls = classes[label]
            r = rng.uniform(min_size, max_size)  # half the shape's extent, in [-1, 1] units
            cx, cy = rng.uniform(-1 + r, 1 - r, 2)
            t = max(rng.uniform(0.12, 0.18) * r / 0.45, 1.5 * pix)
            sd = signed_distance(cls, (gx - cx)[None], (gy - cy)[None], np.array(r).reshape(1, 1, 1),
                                  np.array(t).reshape(1, 1, 1))[0]
            alpha = np.clip(0.5 + sd / pix, 0.0, 1.0)
            inside = alpha >= 0.5
            if inside.sum() < 4:
                continue
            rows, cols = np.nonzero(inside.any(1))[0], np.nonzero(inside.any(0))[0]
            box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32) / s
            if all(overlap(box, other.box) <= 0.1 for other in shapes):
                break
        else:
            continue
        fg = rng.uniform(-1.0, 1.0, 3)
        if np.abs(fg - bg).mean() < 0.5:
            fg = np.clip(-bg + rng.uniform(-0.3, 0.3, 3), -1, 1)
        img = img * (1 - alpha[..., None]) + fg * alpha[..., None]
        shapes.append(Shape(box, label + 1, inside, sd))
    return img, shapes


def add_noise(rng: np.random.Generator, img: np.ndarray, noise: tuple[float, float] = NOISE) -> np.ndarray:
    """Gaussian pixel noise of an s.d. drawn from `noise`, clipped to [-1, 1], as float32."""
    img = img + rng.normal(0.0, rng.uniform(noise[0], noise[1]), img.shape)
    return np.clip(img, -1.0, 1.0).astype(np.float32)


def render_image(rng: np.random.Generator, image_size: int, max_objects: int,
                 min_size: float, max_size: float, classes: Sequence[int] = tuple(range(NUM_CLASSES))):
    """(image [S, S, 3] in [-1, 1], boxes [K, 4], labels [K] in 1..len(classes) (the
    position in `classes` + 1), masks [K, S, S])."""
    img, shapes = draw_scene(rng, image_size, max_objects, min_size, max_size, classes)
    s = image_size
    return (add_noise(rng, img), np.array([sh.box for sh in shapes], np.float32).reshape(-1, 4),
            np.array([sh.label for sh in shapes], np.int32),
            np.array([sh.inside for sh in shapes], bool).reshape(-1, s, s))


def make_split(split: str, num_examples: int, image_size: int = 64, seed: int = 0, *,
               max_objects: int = 4, max_boxes: int = MAX_BOXES, min_size: float = 0.15,
               max_size: float = 0.4, masks: bool = False,
               classes: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
    """{"image", "boxes", "labels", "box_mask"} (+ "masks") in the layout of
    `mobilenet_jax.data.detection_layout`, `max_boxes` slots per image. `classes` picks a subset
    of the ten shapes (indices into `CLASS_NAMES`; labels become 1..len(classes)), for an
    easier set."""
    classes = tuple(range(NUM_CLASSES)) if classes is None else tuple(int(c) for c in classes)
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(range(NUM_CLASSES)):
        raise ValueError(f"classes must be distinct indices into CLASS_NAMES (0..{NUM_CLASSES - 1}), got {classes}")
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_SEEDS)}")
    if not 1 <= max_objects <= max_boxes:
        raise ValueError(f"need 1 <= max_objects <= max_boxes, got {max_objects}, {max_boxes}")
    if not 0 < min_size <= max_size < 1:
        raise ValueError(f"need 0 < min_size <= max_size < 1, got {min_size}, {max_size}")
    rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], num_examples, image_size])
    images, boxes, labels, object_masks = [], [], [], []
    for _ in range(num_examples):
        img, b, l, m = render_image(rng, image_size, max_objects, min_size, max_size, classes)
        images.append(img), boxes.append(b), labels.append(l), object_masks.append(m)
    b, l, valid = pack(boxes, labels, max_boxes, len(classes))
    out = {"image": np.stack(images), "boxes": b, "labels": l, "box_mask": valid}
    if masks:
        full = np.zeros((num_examples, max_boxes, image_size, image_size), bool)
        for i, m in enumerate(object_masks):
            full[i, : len(m)] = m
        out["masks"] = full
    return out


__all__ = ["CLASS_NAMES", "NUM_CLASSES", "make_split", "render_image"]
