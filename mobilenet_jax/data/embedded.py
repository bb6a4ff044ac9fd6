"""An embedded image-classification data set drawn in numpy: no download, no TensorFlow.

Ten classes of shapes that differ only in geometry, never in colour: disk, ring, square,
square frame, triangle, triangle frame, plus, bar, two dots, crescent. Every image draws
its shape at a random position and scale (half the image side or more) in a random colour
on a random, contrasting background colour, with strokes at least 1.5 pixels wide, light
pixel noise, anti-aliased at the requested resolution.

Easy for a plain 6-layer CNN (99% in 200 steps), but not for a MobileNet at 32x32, which
downsamples to 1x1: MobileNetV2-0.35 needs about five epochs of 20k images to pass 90%
(configs/embedded.py; tests/test_train_embedded.py). An earlier, harder version (rotated,
smaller shapes, thin strokes, colour gradients, line clutter) was not learnt at all in two
epochs by MobileNetV2-0.35, ours or keras.applications' alike.
Deterministic: the same (seed, split, size, resolution) always gives the same arrays.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = (
    "disk", "ring", "square", "square_frame", "triangle",
    "triangle_frame", "plus", "bar", "two_dots", "crescent",
)
NUM_CLASSES = len(CLASS_NAMES)
# "validation" is drawn apart from "eval": experiments choose recipes and stopping points on it
# and touch "eval" once, at the end.
_SPLIT_SEEDS = {"train": 0, "eval": 1, "validation": 2}
SPLITS = tuple(_SPLIT_SEEDS)
SHAPE_SIZE = (0.5, 0.8)  # the shape's size r, as a fraction of half the image side
NOISE = (0.02, 0.06)  # the pixel noise's standard deviation, drawn per image (images span [-1, 1])


def signed_distance(cls: int, x: np.ndarray, y: np.ndarray, r: np.ndarray, t: np.ndarray):
    """Positive inside the shape. x, y: [n, H, W] coordinates centred on the shape; r: size;
    t: stroke half-width (both [n, 1, 1])."""
    rad = np.sqrt(x**2 + y**2)
    box = np.maximum(np.abs(x), np.abs(y))
    normals = [2 * np.pi * k / 3 + np.pi / 2 for k in range(3)]
    tri = np.max([np.cos(a) * x + np.sin(a) * y for a in normals], axis=0)
    if cls == 0:
        return r - rad
    if cls == 1:
        return t - np.abs(rad - r)
    if cls == 2:
        return 0.85 * r - box
    if cls == 3:
        return t - np.abs(box - 0.85 * r)
    if cls == 4:
        return 0.55 * r - tri
    if cls == 5:
        return t - np.abs(tri - 0.55 * r)
    if cls == 6:
        w = 0.3 * r
        return np.maximum(np.minimum(w - np.abs(x), r - np.abs(y)), np.minimum(w - np.abs(y), r - np.abs(x)))
    if cls == 7:
        return 0.35 * r * (1.0 - np.sqrt((x / r) ** 2 + (y / (0.35 * r)) ** 2))
    if cls == 8:
        d = 0.38 * r
        return np.maximum(d - np.sqrt((x - 0.6 * r) ** 2 + y**2), d - np.sqrt((x + 0.6 * r) ** 2 + y**2))
    if cls == 9:
        return np.minimum(r - rad, np.sqrt((x - 0.55 * r) ** 2 + y**2) - 0.85 * r)
    raise ValueError(f"class {cls} out of range 0..{NUM_CLASSES - 1}")


def render(
    labels: np.ndarray, image_size: int, rng: np.random.Generator,
    shape_size: tuple[float, float] = SHAPE_SIZE, noise: tuple[float, float] = NOISE,
) -> np.ndarray:
    """Images [n, S, S, 3] float32 in [-1, 1] for the given class labels; each shape's size r
    is drawn uniformly from ``shape_size`` (fractions of half the image side), each image's
    Gaussian pixel noise level from ``noise``."""
    n, s = len(labels), image_size
    grid = (np.arange(s) + 0.5) / s * 2.0 - 1.0
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    pix = 2.0 / s  # one pixel in these coordinates, the anti-aliasing width

    def col(*shape):
        return rng.uniform(-1.0, 1.0, (n,) + shape)

    # Background: one random colour.
    bg = col(3)
    img = np.broadcast_to(bg[:, None, None, :], (n, s, s, 3))
    # The shape: random size and position, a colour far from the background's.
    r = rng.uniform(shape_size[0], shape_size[1], n)
    cx, cy = (rng.uniform(-1, 1, (2, n)) * (0.95 - r)).astype(np.float64)
    t = np.maximum(rng.uniform(0.12, 0.18, n) * r / 0.45, 1.5 * pix)
    x, y = gx - cx[:, None, None], gy - cy[:, None, None]
    sd = np.zeros((n, s, s))
    for c in range(NUM_CLASSES):
        m = labels == c
        if m.any():
            sd[m] = signed_distance(c, x[m], y[m], r[m, None, None], t[m, None, None])
    alpha = np.clip(0.5 + sd / pix, 0.0, 1.0)[..., None]
    fg = col(3)
    flip = np.abs(fg - bg).mean(axis=1) < 0.5
    fg[flip] = np.clip(-bg[flip] + rng.uniform(-0.3, 0.3, (flip.sum(), 3)), -1, 1)
    img = img * (1 - alpha) + fg[:, None, None, :] * alpha
    img += rng.normal(0.0, 1.0, img.shape) * rng.uniform(noise[0], noise[1], n)[:, None, None, None]
    return np.clip(img, -1.0, 1.0).astype(np.float32)


def make_split(
    split: str, num_examples: int, image_size: int = 32, seed: int = 0,
    shape_size: tuple[float, float] = SHAPE_SIZE, noise: tuple[float, float] = NOISE,
):
    """(images [n, S, S, 3] float32 in [-1, 1], labels [n] int32), balanced over classes.

    The three splits are independent draws. Heavier pixel noise (``noise``) and smaller shapes
    (``shape_size``) make the task harder: past some noise level no network can tell every
    shape apart, so accuracy has a ceiling below 100% (the experiments' proxy task)."""
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLIT_SEEDS)}")
    low, high = shape_size
    if not 0 < low <= high < 0.95:
        raise ValueError(f"shape_size={shape_size} must be (min, max) with 0 < min <= max < 0.95")
    if not 0 <= noise[0] <= noise[1]:
        raise ValueError(f"noise={noise} must be (min, max) with 0 <= min <= max")
    extra = [] if tuple(shape_size) == SHAPE_SIZE else [int(round(low * 1000)), int(round(high * 1000))]
    extra += [] if tuple(noise) == NOISE else [int(round(noise[0] * 1000)), int(round(noise[1] * 1000))]
    rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], num_examples, image_size, *extra])
    labels = rng.permutation(np.arange(num_examples) % NUM_CLASSES).astype(np.int32)
    chunks = [
        render(labels[i : i + 2048], image_size, rng, shape_size, noise) for i in range(0, num_examples, 2048)
    ]
    return np.concatenate(chunks), labels
