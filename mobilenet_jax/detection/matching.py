"""Anchor-to-object matching of SSD (Sec. 2.2 "Matching strategy"), as the TF object
detection API's SSD configs set it (`argmax_matcher`, matched and unmatched thresholds 0.5,
`force_match_for_each_row`):

1. every anchor takes the object it overlaps most if that IoU is >= 0.5, else background;
2. then every object takes its best-overlapping anchor whatever the IoU (so no object is
   left without an anchor; when two objects share a best anchor, one of them keeps it).

Objects come in a fixed-size layout with a validity mask; padded slots never match.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from mobilenet_jax.detection.boxes import pairwise_iou

IOU_THRESHOLD = 0.5
BACKGROUND = -1


def match(gt_boxes: jnp.ndarray, gt_valid: jnp.ndarray, anchors: jnp.ndarray,
          threshold: float = IOU_THRESHOLD) -> jnp.ndarray:
    """Index [A] of the object each anchor is matched to, `BACKGROUND` (-1) for none.

    gt_boxes [G, 4], gt_valid [G] bool, anchors [A, 4]; one image (vmap for a batch).
    """
    iou = pairwise_iou(gt_boxes, anchors)  # [G, A]
    iou = jnp.where(gt_valid[:, None], iou, -1.0)
    best_gt = jnp.argmax(iou, axis=0)
    best_iou = jnp.max(iou, axis=0)
    matched = jnp.where(best_iou >= threshold, best_gt, BACKGROUND)
    # Force: each valid object claims its best anchor (invalid ones write out of range: dropped).
    num_anchors = anchors.shape[0]
    best_anchor = jnp.where(gt_valid, jnp.argmax(iou, axis=1), num_anchors)
    return matched.at[best_anchor].set(jnp.arange(gt_boxes.shape[0]), mode="drop")


def match_batch(gt_boxes, gt_valid, anchors, threshold: float = IOU_THRESHOLD):
    """`match` over a batch: gt_boxes [B, G, 4], gt_valid [B, G] -> [B, A]."""
    return jax.vmap(match, in_axes=(0, 0, None, None))(gt_boxes, gt_valid, anchors, threshold)
