"""COCO-style detection metrics through pycocotools (the field's reference implementation):
AP@[.5:.95], AP50, AP75, AP for small / medium / large objects, AR@100.

`CocoEvaluator` collects ground truth (the `layout` format) and fixed-size detections batch
by batch, then builds COCO objects in memory and runs `COCOeval` for boxes. Boxes are
converted to pixels with the image size, so COCO's area ranges (small < 32^2 <= medium <
96^2 pixels) apply as on COCO itself; on small embedded images most objects are "small".
Metrics COCO cannot define (no ground truth of that size) are reported as NaN, not -1.
Ground truth flagged as crowd (`gt_crowd`) is an ignore region, as in COCO: a detection
on it is neither a true nor a false positive.
"""
from __future__ import annotations

import contextlib
import io
from typing import Optional

import numpy as np

METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


class CocoEvaluator:
    """Accumulates (ground truth, detections) of images and computes COCO box metrics."""

    def __init__(self, image_size: int, num_classes: int):
        self.image_size, self.num_classes = image_size, num_classes
        self._gt: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._det: list[np.ndarray] = []
        self._num_images = 0

    def add(self, gt_boxes, gt_labels, gt_mask, det_boxes, det_scores, det_classes, det_valid,
            image_mask: Optional[np.ndarray] = None, gt_crowd: Optional[np.ndarray] = None) -> None:
        """One batch: gt [N, M, 4] / [N, M] / [N, M]; detections [N, D, 4] / [N, D] x3, boxes
        (x1, y1, x2, y2) in [0, 1]; `image_mask` [N] drops padded images (exact evaluation);
        `gt_crowd` [N, M] flags crowd ground truth (ignored, see the module docstring)."""
        arrays = [np.asarray(a) for a in (gt_boxes, gt_labels, gt_mask, det_boxes, det_scores,
                                           det_classes, det_valid)]
        gb, gl, gm, db, ds, dc, dv = arrays
        gm, dv = gm.astype(bool), dv.astype(bool)
        crowd = np.zeros(gm.shape, bool) if gt_crowd is None else np.asarray(gt_crowd, bool).reshape(gm.shape)
        n = gb.shape[0]
        keep = np.ones(n, bool) if image_mask is None else np.asarray(image_mask, bool).reshape(n)
        s = float(self.image_size)
        for i in np.nonzero(keep)[0]:
            image_id = self._num_images
            self._num_images += 1
            self._gt.append((image_id, gb[i][gm[i]] * s, gl[i][gm[i]], crowd[i][gm[i]]))
            boxes = db[i][dv[i]] * s
            if len(boxes):
                xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], -1)
                self._det.append(np.concatenate(
                    [np.full((len(boxes), 1), image_id), xywh, ds[i][dv[i]][:, None],
                     dc[i][dv[i]][:, None]], -1))

    def result(self) -> dict[str, float]:
        """The metrics of everything added so far (NaN where COCO has nothing to measure)."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        nan = {k: float("nan") for k in METRICS + ("AR100",)}
        annotations = []
        for image_id, boxes, labels, crowds in self._gt:
            for b, l, c in zip(boxes, labels, crowds):
                w, h = float(b[2] - b[0]), float(b[3] - b[1])
                annotations.append(dict(id=len(annotations) + 1, image_id=int(image_id),
                                        category_id=int(l), bbox=[float(b[0]), float(b[1]), w, h],
                                        area=w * h, iscrowd=int(c)))
        if not annotations:
            return nan
        gt = COCO()
        gt.dataset = dict(
            images=[dict(id=i, width=self.image_size, height=self.image_size) for i in range(self._num_images)],
            annotations=annotations,
            categories=[dict(id=c) for c in range(1, self.num_classes + 1)],
        )
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            if not self._det:
                return {**nan, **{k: 0.0 for k in ("AP", "AP50", "AP75", "AR100")}}
            dt = gt.loadRes(np.concatenate(self._det))
            ev = COCOeval(gt, dt, iouType="bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(x) if x >= 0 else float("nan") for x in ev.stats]
        return {**dict(zip(METRICS, stats[:6])), "AR100": stats[8]}
