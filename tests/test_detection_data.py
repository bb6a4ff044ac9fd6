"""Detection data: the embedded set, the batch layout's checks, and the COCO evaluator."""
import numpy as np
import pytest

from mobilenet_jax.data.embedded_detection import make_split
from mobilenet_jax.detection.coco_eval import CocoEvaluator
from mobilenet_jax.data.detection_layout import check_batch, pack


def test_embedded_detection_set_layout_and_exact_boxes():
    d = make_split("train", 40, 64, max_objects=4, max_boxes=6, masks=True)
    assert d["image"].shape == (40, 64, 64, 3) and d["image"].dtype == np.float32
    assert d["boxes"].shape == (40, 6, 4) and d["labels"].shape == d["box_mask"].shape == (40, 6)
    counts = d["box_mask"].sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts)) >= 3  # varied counts
    assert set(np.unique(d["labels"][d["box_mask"]])) <= set(range(1, 11))
    assert len(np.unique(d["labels"][d["box_mask"]])) >= 8  # most classes appear
    assert (d["labels"][~d["box_mask"]] == 0).all()
    sides = (d["boxes"][..., 2] - d["boxes"][..., 0])[d["box_mask"]]
    assert sides.min() < 0.2 and sides.max() > 0.3  # varied sizes
    check_batch(d, num_classes=10, image_size=64)
    # Each box is the exact extent of its object's mask.
    for i in range(5):
        for j in np.nonzero(d["box_mask"][i])[0]:
            rows, cols = np.nonzero(d["masks"][i, j].any(1))[0], np.nonzero(d["masks"][i, j].any(0))[0]
            np.testing.assert_allclose(d["boxes"][i, j] * 64, [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    again = make_split("train", 40, 64, max_objects=4, max_boxes=6)
    np.testing.assert_array_equal(again["boxes"], d["boxes"])
    assert not np.array_equal(make_split("eval", 40, 64, max_objects=4, max_boxes=6)["boxes"], d["boxes"])


@pytest.mark.parametrize("boxes, labels, message", [
    ([[0.1, 0.1, 1.2, 0.5]], [1], "outside the image"),
    ([[0.5, 0.1, 0.2, 0.5]], [1], "x2 < x1"),
    ([[0.2, 0.1, 0.2, 0.5]], [1], "zero width"),
    ([[0.1, 0.1, 0.2, 0.5]], [0], "outside 1..3"),
    ([[0.1, 0.1, 0.2]], [1], r"shape \[num_objects, 4\]"),
    ([[0.1, 0.1, 0.2, 0.5]], [1, 2], "one per box"),
])
def test_bad_boxes_raise_clear_errors(boxes, labels, message):
    with pytest.raises(ValueError, match=message):
        pack([np.array(boxes)], [np.array(labels)], max_boxes=4, num_classes=3)


def test_layout_edge_cases():
    # No objects: valid, every slot padding.
    b, l, m = pack([np.zeros((0, 4))], [np.zeros(0)], max_boxes=3, num_classes=3)
    assert not m.any() and (l == 0).all()
    # More objects than slots: an error naming the fix, or the largest kept when asked.
    many = np.array([[0, 0, 0.1, 0.1], [0, 0, 0.5, 0.5], [0.5, 0.5, 0.7, 0.7], [0.2, 0.2, 0.9, 0.9]])
    with pytest.raises(ValueError, match="max_boxes=2"):
        pack([many], [np.array([1, 2, 3, 1])], max_boxes=2, num_classes=3)
    b, l, m = pack([many], [np.array([1, 2, 3, 1])], max_boxes=2, num_classes=3, overflow="keep_largest")
    np.testing.assert_array_equal(l[0], [2, 1])
    # A batch of the wrong shape.
    with pytest.raises(ValueError, match=r"images must be \[N, H, W, 3\]"):
        check_batch({"image": np.zeros((2, 8, 8)), "boxes": b, "labels": l, "box_mask": m}, 3)
    with pytest.raises(ValueError, match="boxes must be"):
        check_batch({"image": np.zeros((2, 8, 8, 3)), "boxes": b, "labels": l, "box_mask": m}, 3)


def _eval(gt, gt_labels, det, scores, classes, size=100):
    ev = CocoEvaluator(size, num_classes=2)
    gt, det = np.asarray(gt, np.float32), np.asarray(det, np.float32)
    ev.add(gt, np.asarray(gt_labels), np.ones(gt.shape[:2], bool), det, np.asarray(scores, np.float32),
           np.asarray(classes), np.ones(det.shape[:2], bool))
    return ev.result()


def test_coco_evaluator_known_answers():
    gt = [[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]]
    # Perfect detections: every AP is 1.
    r = _eval(gt, [[1, 2]], gt, [[0.9, 0.8]], [[1, 2]])
    assert [r[k] for k in ("AP", "AP50", "AP75")] == pytest.approx([1.0] * 3)
    # One class, two objects: one found (score 0.9), one false positive (0.8), one missed:
    # precision 1 up to recall 0.5, then 0 -> 101-point AP = 51/101 at every threshold.
    r = _eval([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]], [[1, 1]],
              [[[0.1, 0.1, 0.4, 0.4], [0.0, 0.6, 0.05, 0.65]]], [[0.9, 0.8]], [[1, 1]])
    assert r["AP"] == pytest.approx(51 / 101) and r["AP50"] == pytest.approx(51 / 101)
    # A detection of IoU 0.62 counts at thresholds 0.50, 0.55, 0.60 only: AP = 3/10, AP50 = 1.
    a = [0.0, 0.0, 0.5, 0.5]
    b = [0.0, 0.0, 0.5, 0.5 * 0.62]  # IoU 0.62, inside a
    r = _eval([[a]], [[1]], [[b]], [[0.7]], [[1]])
    assert (r["AP50"], r["AP75"], r["AP"]) == pytest.approx((1.0, 0.0, 0.3))
    # Wrong class: nothing found; and no detections at all: 0, not an error.
    assert _eval([[a]], [[1]], [[a]], [[0.7]], [[2]])["AP50"] == 0.0
    ev = CocoEvaluator(100, 2)
    ev.add(np.array([[a]]), np.array([[1]]), np.ones((1, 1), bool), np.zeros((1, 2, 4)),
           np.zeros((1, 2)), np.zeros((1, 2), int), np.zeros((1, 2), bool))
    assert ev.result()["AP"] == 0.0


def test_coco_evaluator_ignores_detections_on_crowd_regions():
    """COCO's rule: a detection matched to crowd ground truth is ignored, not a false positive."""
    # A small detection inside the crowd region (IoU 0.05 with it, but wholly inside: COCO matches a
    # crowd by the detection's own area), scored above the true one.
    obj, crowd, det_on_crowd = [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.95, 0.95], [0.6, 0.6, 0.7, 0.7]
    gt = np.array([[obj, crowd]], np.float32)
    dets = (np.array([[det_on_crowd, obj]], np.float32), np.array([[0.9, 0.8]], np.float32), np.array([[1, 1]]))
    results = {}
    for flagged in (False, True):
        ev = CocoEvaluator(100, num_classes=1)
        ev.add(gt, np.array([[1, 1]]), np.ones((1, 2), bool), *dets, np.ones((1, 2), bool),
               gt_crowd=np.array([[False, flagged]]))
        results[flagged] = ev.result()
    assert results[True]["AP"] == pytest.approx(1.0)  # the crowd is ignored: one object, found
    # As a plain object the crowd box is missed and the small detection is a false positive ranked
    # first: precision 1/2 up to recall 1/2, then nothing -> 101-point AP50 = 0.5 x 51/101.
    assert results[False]["AP50"] == pytest.approx(0.5 * 51 / 101)


def test_embedded_detection_class_subset():
    d = make_split("eval", 30, 64, classes=(0, 2, 6), max_objects=3, max_boxes=3)
    assert set(np.unique(d["labels"][d["box_mask"]])) == {1, 2, 3}
    with pytest.raises(ValueError, match="distinct indices"):
        make_split("eval", 2, 64, classes=(0, 0))
