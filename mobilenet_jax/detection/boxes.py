"""Box arithmetic: IoU and the SSD box coder (Faster R-CNN's parametrisation, SSD Sec. 2.2).

Boxes are (x1, y1, x2, y2), normalised to [0, 1] of the image. A box is encoded against its
anchor as (10 dx / w_a, 10 dy / h_a, 5 log(w / w_a), 5 log(h / h_a)): the scale factors
(10, 10, 5, 5) are the TF object detection API's `faster_rcnn_box_coder` defaults used by its
SSD/SSDLite configs and torchvision's SSD (they replace SSD's "variances" 0.1 / 0.2).
"""
from __future__ import annotations

import jax.numpy as jnp

#: (x, y, w, h) scale factors of the box coder.
BOX_CODER_WEIGHTS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
#: Largest log-size change decoding accepts (log(1000 / 16), as torchvision clamps): keeps an
#: untrained network's exp() finite.
_MAX_LOG_SCALE = 4.135166556742356


def area(boxes: jnp.ndarray) -> jnp.ndarray:
    return jnp.clip(boxes[..., 2] - boxes[..., 0], 0) * jnp.clip(boxes[..., 3] - boxes[..., 1], 0)


def pairwise_iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """IoU [..., N, M] of boxes a [..., N, 4] and b [..., M, 4]; 0 where the union is empty."""
    lo = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
    hi = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = jnp.prod(jnp.clip(hi - lo, 0), axis=-1)
    union = area(a)[..., :, None] + area(b)[..., None, :] - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def _centre_size(boxes):
    wh = boxes[..., 2:] - boxes[..., :2]
    return boxes[..., :2] + 0.5 * wh, wh


def encode(boxes: jnp.ndarray, anchors: jnp.ndarray,
           weights: tuple[float, float, float, float] = BOX_CODER_WEIGHTS) -> jnp.ndarray:
    """Regression targets [..., 4] of boxes [..., 4] against anchors [..., 4] (broadcast)."""
    w = jnp.asarray(weights, jnp.float32)
    c, wh = _centre_size(boxes)
    ca, wha = _centre_size(anchors)
    wh = jnp.maximum(wh, 1e-8)  # a degenerate (zero-size) box encodes finitely
    return jnp.concatenate([(c - ca) / wha * w[:2], jnp.log(wh / wha) * w[2:]], axis=-1)


def decode(codes: jnp.ndarray, anchors: jnp.ndarray,
           weights: tuple[float, float, float, float] = BOX_CODER_WEIGHTS) -> jnp.ndarray:
    """Boxes [..., 4] from regression codes [..., 4] and anchors; the inverse of `encode`."""
    w = jnp.asarray(weights, jnp.float32)
    ca, wha = _centre_size(anchors)
    c = ca + codes[..., :2] / w[:2] * wha
    wh = jnp.exp(jnp.minimum(codes[..., 2:] / w[2:], _MAX_LOG_SCALE)) * wha
    return jnp.concatenate([c - 0.5 * wh, c + 0.5 * wh], axis=-1)
