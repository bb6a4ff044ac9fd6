"""The SSD loss (SSD Sec. 2.2, "Training objective" and "Hard negative mining"), as SSDLite is
trained with it: smooth-L1 localisation on the matched anchors' encoded boxes plus softmax
cross-entropy classification over (background + classes) on the matched anchors and the
hardest background anchors, at most `neg_pos_ratio` (3) per matched anchor of the image and
at least `min_negatives` per image (the TF object detection API's `hard_example_miner`
settings: 3:1, at least 3, so an image without objects still teaches background).

The function returns sums and the number of matched anchors separately, so a data-parallel
step can normalise by the global count (`lax.psum`) and equal a single-device step exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mobilenet_jax.detection.boxes import encode
from mobilenet_jax.detection.matching import BACKGROUND, IOU_THRESHOLD, match_batch

NEG_POS_RATIO = 3
MIN_NEGATIVES = 3


class LossTerms(NamedTuple):
    """Sums over the batch; divide both losses by `num_positives` (floored at 1)."""

    localization: jax.Array
    classification: jax.Array
    num_positives: jax.Array
    num_negatives: jax.Array


def hard_negatives(neg_loss: jax.Array, is_negative: jax.Array, num_positives: jax.Array,
                   ratio: int = NEG_POS_RATIO, min_negatives: int = MIN_NEGATIVES) -> jax.Array:
    """Mask [B, A] of the `max(ratio * positives, min_negatives)` background anchors of each
    image with the highest classification loss (ties broken by anchor order)."""
    loss = jnp.where(is_negative, neg_loss, -jnp.inf)
    order = jnp.argsort(-loss, axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True)
    keep = jnp.maximum(ratio * num_positives, min_negatives)[:, None]
    return (rank < keep) & is_negative


def ssd_loss(box_codes: jax.Array, class_logits: jax.Array, anchors: jax.Array,
             gt_boxes: jax.Array, gt_labels: jax.Array, gt_valid: jax.Array, *,
             iou_threshold: float = IOU_THRESHOLD, neg_pos_ratio: int = NEG_POS_RATIO,
             min_negatives: int = MIN_NEGATIVES) -> LossTerms:
    """Loss sums of a batch.

    box_codes [B, A, 4], class_logits [B, A, 1 + C] (index 0 = background), anchors [A, 4];
    gt_boxes [B, G, 4] (x1, y1, x2, y2 in [0, 1]), gt_labels [B, G] in 1..C, gt_valid [B, G].
    """
    matched = match_batch(gt_boxes, gt_valid, anchors, iou_threshold)  # [B, A]
    positive = matched != BACKGROUND
    idx = jnp.maximum(matched, 0)
    target_boxes = jnp.take_along_axis(gt_boxes, idx[..., None], axis=1)
    target_labels = jnp.where(positive, jnp.take_along_axis(gt_labels, idx, axis=1), 0)
    codes = encode(target_boxes, anchors[None])
    # Smooth L1 (beta 1) is the Huber loss at delta 1: 0.5 x^2 below |x| = 1, |x| - 0.5 above.
    loc = jnp.sum(optax.huber_loss(box_codes.astype(jnp.float32), codes, delta=1.0), -1)
    loc = jnp.sum(jnp.where(positive, loc, 0.0))
    ce = optax.softmax_cross_entropy_with_integer_labels(class_logits.astype(jnp.float32), target_labels)
    num_pos = jnp.sum(positive, axis=-1)
    negatives = hard_negatives(jax.lax.stop_gradient(ce), ~positive, num_pos, neg_pos_ratio, min_negatives)
    cls = jnp.sum(jnp.where(positive | negatives, ce, 0.0))
    return LossTerms(loc, cls, jnp.sum(num_pos), jnp.sum(negatives))
