"""Batched, fixed-size, jit-compiled non-maximum suppression and SSD post-processing.

Per-class greedy NMS (as the TF object detection API's `batch_multiclass_non_max_suppression`
that SSDLite exports with) in one pass over all classes: a candidate suppresses only
candidates of its own class (the IoU matrix is masked by class equality), so one greedy pass
equals a pass per class. The boxes are compared as they are: shifting them apart by class id
instead costs float32 IoU precision at high class ids. Shapes are static: the
`pre_nms_top_k` highest (anchor, class) scores are the candidates, the result is
`max_detections` rows with a validity mask.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mobilenet_jax.detection.boxes import decode, pairwise_iou


class Detections(NamedTuple):
    """Fixed-size detections: boxes [B, D, 4] (x1, y1, x2, y2 in [0, 1]), scores [B, D],
    classes [B, D] (1..C), valid [B, D]; valid rows first, by decreasing score."""

    boxes: jax.Array
    scores: jax.Array
    classes: jax.Array
    valid: jax.Array


def greedy_nms(boxes: jax.Array, scores: jax.Array, iou_threshold: float,
               classes: jax.Array | None = None) -> jax.Array:
    """Keep-mask [K] of greedy NMS over boxes [K, 4] already sorted by decreasing score;
    candidates with score -inf are never kept. With classes [K], a box suppresses only boxes
    of its own class."""
    iou = pairwise_iou(boxes, boxes)
    k = boxes.shape[0]
    later = jnp.arange(k)[None, :] > jnp.arange(k)[:, None]
    suppresses = (iou > iou_threshold) & later  # [i, j]: i would suppress j
    if classes is not None:
        suppresses &= classes[:, None] == classes[None, :]

    def body(i, keep):
        return keep & ~(keep[i] & suppresses[i])

    return jax.lax.fori_loop(0, k, body, jnp.isfinite(scores))


def multiclass_nms(boxes: jax.Array, scores: jax.Array, *, score_threshold: float = 0.01,
                   iou_threshold: float = 0.6, pre_nms_top_k: int = 300,
                   max_detections: int = 100) -> Detections:
    """One image: boxes [A, 4], class scores [A, C] (background excluded; column c is class
    c + 1). Defaults are the TF API SSDLite configs' (score 1e-8 there; 0.01 here keeps the
    candidates real), 100 detections per image as COCO evaluates."""
    num_anchors, num_classes = scores.shape
    flat = scores.reshape(-1)
    k = min(pre_nms_top_k, flat.shape[0])
    top, idx = jax.lax.top_k(flat, k)
    anchor, cls = idx // num_classes, idx % num_classes
    top = jnp.where(top >= score_threshold, top, -jnp.inf)
    cand = boxes[anchor]
    keep = greedy_nms(cand, top, iou_threshold, classes=cls)
    ranked = jnp.where(keep, top, -jnp.inf)
    d = min(max_detections, k)
    out_scores, order = jax.lax.top_k(ranked, d)
    valid = jnp.isfinite(out_scores)
    pad = max_detections - d
    def fit(x, fill):
        return jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
    return Detections(
        boxes=fit(jnp.where(valid[:, None], cand[order], 0.0), 0.0),
        scores=fit(jnp.where(valid, out_scores, 0.0), 0.0),
        classes=fit(jnp.where(valid, cls[order] + 1, 0), 0).astype(jnp.int32),
        valid=fit(valid, False),
    )


def postprocess(box_codes: jax.Array, class_logits: jax.Array, anchors: jax.Array,
                **nms_kwargs) -> Detections:
    """Network outputs [B, A, 4] and [B, A, 1 + C] -> fixed-size detections per image:
    decode the boxes, clip them to the image, softmax the scores, drop the background,
    multiclass NMS. jit-compatible (all shapes static)."""
    boxes = jnp.clip(decode(box_codes.astype(jnp.float32), anchors[None]), 0.0, 1.0)
    scores = jax.nn.softmax(class_logits.astype(jnp.float32), axis=-1)[..., 1:]
    return jax.vmap(lambda b, s: multiclass_nms(b, s, **nms_kwargs))(boxes, scores)
