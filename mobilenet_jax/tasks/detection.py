"""Detection (SSDLite, MobileNetV2 Sec. 6.2): the SSD loss, fixed-size NMS on the devices and
COCO AP / AP50 / AP75 / per-size AP / AR@100 from pycocotools on the host; the best checkpoint
by AP.

Batch layout (per device): {"image": [n, S, S, 3], "boxes": [n, M, 4], "labels": [n, M],
"box_mask": [n, M]} (see `data.detection_layout`), plus "mask" [n] on evaluation batches (padded
images) and, where the data set has crowd annotations, "is_crowd" [n, M] (COCO's ignore
regions, read on the host). The loss is the SSD loss normalised by the number of matched
anchors of the *global* batch (`lax.psum`), so a data-parallel step equals a single-device
step on the same batch.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mobilenet_jax.data.pipeline import AXIS, Batch
from mobilenet_jax.detection.coco_eval import CocoEvaluator
from mobilenet_jax.detection.loss import ssd_loss
from mobilenet_jax.detection.nms import postprocess
from mobilenet_jax.detection.ssdlite import SSDLite, model_anchors
from mobilenet_jax.tasks import EvalStep, LossFn, register_task


@register_task("detection")
@dataclasses.dataclass(frozen=True)
class DetectionTask:
    """SSD training and COCO evaluation of `model` at `image_size`."""

    model: SSDLite
    image_size: int
    score_threshold: float = 0.01
    iou_threshold: float = 0.6
    max_detections: int = 100

    best_metric: ClassVar[str] = "AP"
    batch_keys: ClassVar[tuple[str, ...]] = ("image", "boxes", "labels", "box_mask")

    @classmethod
    def from_config(cls, config, model: SSDLite) -> DetectionTask:
        return cls(model, config.image_size)

    @property
    def anchors(self) -> np.ndarray:
        return model_anchors(self.model, self.image_size)

    def loss_fn(self) -> LossFn:
        """(model outputs, batch) -> (per-device loss, metrics to average); inside pmap."""
        anchors = jnp.asarray(self.anchors)

        def loss(outputs: dict, batch: Batch):
            terms = ssd_loss(outputs["box_codes"], outputs["class_logits"], anchors,
                             batch["boxes"], batch["labels"], batch["box_mask"])
            devices = lax.psum(1, AXIS)
            num_pos = jnp.maximum(lax.psum(terms.num_positives, AXIS), 1).astype(jnp.float32)
            loc = terms.localization * devices / num_pos
            cls = terms.classification * devices / num_pos
            return loc + cls, {"localization_loss": loc, "classification_loss": cls,
                               "positives_per_image": terms.num_positives / batch["boxes"].shape[0]}

        return loss

    def eval_step(self) -> EvalStep:
        """`(variables, batch) -> detections` of fixed size, for the host to score; it reads only
        batch["image"] (also usable un-pmapped, e.g. `jax.jit` on a batch of images)."""
        anchors = jnp.asarray(self.anchors)

        def step(variables: dict, batch: Batch):
            out = self.model.apply(variables, batch["image"], train=False)
            det = postprocess(out["box_codes"], out["class_logits"], anchors,
                              score_threshold=self.score_threshold, iou_threshold=self.iou_threshold,
                              max_detections=self.max_detections)
            return det._asdict()

        return step

    def reduce(self, outputs: Iterable[tuple[Batch, Any]]) -> dict[str, float]:
        """COCO metrics over the (host batch, detections) pairs; each batch is [devices, n, ...]
        or [n, ...] and its detections have the same leading shape."""
        evaluator = CocoEvaluator(self.image_size, self.model.num_classes)
        for batch, det in outputs:
            det = jax.device_get(det)
            lead = np.ndim(batch["boxes"]) - 2  # [devices, n, M, 4] or [n, M, 4]

            def flat(x):
                x = np.asarray(x)
                return x.reshape((-1,) + x.shape[lead:])

            mask, crowd = batch.get("mask"), batch.get("is_crowd")
            evaluator.add(*(flat(batch[k]) for k in ("boxes", "labels", "box_mask")),
                          *(flat(det[k]) for k in ("boxes", "scores", "classes", "valid")),
                          image_mask=None if mask is None else np.asarray(mask).reshape(-1),
                          gt_crowd=None if crowd is None else flat(crowd))
        return evaluator.result()
