"""Augmentation that moves an image and its segmentation mask together: a random scale and
crop, then a random left-right flip (DeepLab's recipe, which the MobileNetV2/V3 segmentation
experiments follow: scale in [0.5, 2], a fixed-size crop, ignore-padded).

Both backends do the same thing: draw a scale s, cut a window of crop/s source pixels at a
random offset (the image padded at the bottom and right where the window overhangs it), and
resample it to the crop size, bilinearly for the image and by nearest neighbour for the mask,
so labels are never blended; padded pixels get `pad_value` in the image and `ignore_label` in
the mask. `augment` (numpy, one example, a numpy Generator) serves the embedded set;
`tf_augment` (tf.data, stateless seeds) serves the tfds readers.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from mobilenet_jax.segmentation.layout import IGNORE_LABEL


@dataclasses.dataclass(frozen=True)
class SegmentationAugment:
    """Random scale-crop and flip; the defaults are DeepLab's."""

    min_scale: float = 0.5
    max_scale: float = 2.0
    flip: bool = True
    pad_value: float = 0.0  # image value of padded pixels (0 = mid-grey in [-1, 1])
    ignore_label: int = IGNORE_LABEL

    def __post_init__(self):
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")


def _axis(offset: float, scale: float, out: int, size: int):
    """Where the `out` output pixels of one axis sample the source: nearest index and whether
    it lies inside the source, and the bilinear pair (lo, hi, weight of hi)."""
    centre = offset + (np.arange(out) + 0.5) / scale  # source coordinate; pixel k spans [k, k+1)
    nearest = np.floor(centre).astype(np.int64)
    inside = (nearest >= 0) & (nearest < size)
    f = np.clip(centre - 0.5, 0.0, size - 1)
    lo = np.floor(f).astype(np.int64)
    return np.clip(nearest, 0, size - 1), inside, lo, np.minimum(lo + 1, size - 1), f - lo


def scale_crop(image: np.ndarray, segmentation: np.ndarray, scale: float, offset: tuple[float, float],
               crop: tuple[int, int], pad_value: float = 0.0, ignore_label: int = IGNORE_LABEL):
    """The `crop` [h, w] window at source `offset` (y, x) of the image scaled by `scale`
    (numpy): (image [h, w, C] float32, segmentation [h, w] int32)."""
    height, width = segmentation.shape
    ny, in_y, y0, y1, wy = _axis(offset[0], scale, crop[0], height)
    nx, in_x, x0, x1, wx = _axis(offset[1], scale, crop[1], width)
    img = np.asarray(image, np.float32)
    rows = img[y0] * (1 - wy)[:, None, None] + img[y1] * wy[:, None, None]
    out = rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]
    inside = in_y[:, None] & in_x[None, :]
    out = np.where(inside[..., None], out, pad_value).astype(np.float32)
    seg = np.where(inside, np.asarray(segmentation)[ny][:, nx], ignore_label).astype(np.int32)
    return out, seg


def augment(image: np.ndarray, segmentation: np.ndarray, rng: np.random.Generator,
            config: SegmentationAugment, crop: tuple[int, int] | None = None, base_scale: float = 1.0):
    """One example, randomly scaled (by `base_scale` times the drawn scale), cropped to `crop`
    (default: its own size) and flipped."""
    height, width = segmentation.shape
    crop = (height, width) if crop is None else crop
    scale = base_scale * rng.uniform(config.min_scale, config.max_scale)
    offset = tuple(rng.uniform(0.0, max(n - c / scale, 0.0)) for n, c in zip((height, width), crop))
    image, segmentation = scale_crop(image, segmentation, scale, offset, crop, config.pad_value,
                                     config.ignore_label)
    if config.flip and rng.random() < 0.5:
        image, segmentation = image[:, ::-1], segmentation[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(segmentation)


def tf_augment(tf, image, segmentation, seed, config: SegmentationAugment, crop: tuple[int, int],
               base_scale=1.0):
    """tf.data: image [H, W, 3] float32, segmentation [H, W] integer, seed [2] int64 ->
    (image [crop, 3] float32, segmentation [crop] int32); the drawn scale times `base_scale`.
    Cuts the window first, then resizes it: a 2x scale of a 1024x2048 frame never
    materialises a 2048x4096 image."""
    shape = tf.shape(segmentation)
    out = tf.constant(crop, tf.float32)
    scale = tf.random.stateless_uniform((), seed, config.min_scale, config.max_scale) * base_scale
    window = tf.maximum(tf.cast(tf.math.ceil(out / scale), tf.int32), 1)
    padded = tf.maximum(window, shape[:2])
    image = tf.pad(image, [[0, padded[0] - shape[0]], [0, padded[1] - shape[1]], [0, 0]],
                   constant_values=config.pad_value)
    seg = tf.pad(tf.cast(segmentation, tf.int32), [[0, padded[0] - shape[0]], [0, padded[1] - shape[1]]],
                 constant_values=config.ignore_label)
    room = tf.cast(padded - window + 1, tf.float32)
    offset = tf.cast(tf.random.stateless_uniform((2,), seed + 1) * room, tf.int32)
    offset = tf.minimum(offset, padded - window)
    image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([window, [3]], 0))
    seg = tf.slice(seg, offset, window)
    image = tf.image.resize(image, crop, method="bilinear")
    seg = tf.image.resize(seg[..., None], crop, method="nearest")[..., 0]
    if config.flip:
        flip = tf.random.stateless_uniform((), seed + 2) < 0.5
        image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
        seg = tf.cond(flip, lambda: seg[:, ::-1], lambda: seg)
    return tf.ensure_shape(image, crop + (3,)), tf.ensure_shape(tf.cast(seg, tf.int32), crop)


__all__ = ["SegmentationAugment", "augment", "scale_crop", "tf_augment"]
