"""The segmentation confusion matrix against numpy, across pmap devices, and mIoU from it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax.segmentation.layout import IGNORE_LABEL
from mobilenet_jax.segmentation.metrics import SegmentationMetrics, accumulate, confusion_matrix


def _reference(labels, predictions, num_classes, mask):
    """Counts pixel by pixel, the slow and obvious way."""
    m = np.zeros((num_classes, num_classes), np.int64)
    for n in range(labels.shape[0]):
        if not mask[n]:
            continue
        for t, p in zip(labels[n].ravel(), predictions[n].ravel()):
            if t != IGNORE_LABEL:
                m[t, p] += 1
    return m


def _case(rng, n=6, size=9, num_classes=5):
    labels = rng.integers(0, num_classes, (n, size, size))
    labels[rng.random(labels.shape) < 0.2] = IGNORE_LABEL
    predictions = rng.integers(0, num_classes, (n, size, size))
    # Correlate: predictions right on about half the pixels, so the diagonal is not tiny.
    right = rng.random(labels.shape) < 0.5
    predictions[right & (labels != IGNORE_LABEL)] = labels[right & (labels != IGNORE_LABEL)]
    mask = rng.random(n) < 0.7
    return labels.astype(np.int32), predictions.astype(np.int32), mask


@pytest.mark.parametrize("seed", range(4))
def test_confusion_matrix_matches_numpy_excluding_ignore_and_padding(seed):
    rng = np.random.default_rng(seed)
    labels, predictions, mask = _case(rng)
    got = np.asarray(jax.jit(lambda l, p, m: confusion_matrix(l, p, 5, mask=m))(labels, predictions, mask))
    want = _reference(labels, predictions, 5, mask)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int32
    assert got.sum() == ((labels != IGNORE_LABEL) & mask[:, None, None]).sum()
    # Without a mask every image counts.
    np.testing.assert_array_equal(np.asarray(confusion_matrix(labels, predictions, 5)),
                                  _reference(labels, predictions, 5, np.ones(len(mask), bool)))


def test_psum_over_four_devices_equals_one_device():
    assert jax.local_device_count() >= 4, "conftest should give 8 fake CPU devices"
    rng = np.random.default_rng(7)
    labels, predictions, mask = _case(rng, n=8)
    mask[-3:] = False  # the last device holds only padding, the third some
    step = jax.pmap(lambda l, p, m: confusion_matrix(l, p, 5, mask=m, axis_name="batch"),
                    axis_name="batch", devices=jax.local_devices()[:4])
    per_device = np.asarray(step(*(x.reshape((4, 2) + x.shape[1:]) for x in (labels, predictions, mask))))
    one = np.asarray(confusion_matrix(labels, predictions, 5, mask=mask))
    assert per_device.shape == (4, 5, 5)
    for d in range(4):
        np.testing.assert_array_equal(per_device[d], one)
    np.testing.assert_array_equal(one, _reference(labels, predictions, 5, mask))


def _reference_metrics(m):
    ious = []
    for c in range(len(m)):
        tp, union = m[c, c], m[c].sum() + m[:, c].sum() - m[c, c]
        ious.append(tp / union if union else np.nan)
    present = [i for i in ious if not np.isnan(i)]
    return sum(present) / len(present), np.trace(m) / m.sum(), ious


@pytest.mark.parametrize("seed", range(3))
def test_miou_from_summed_batches_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    total = None
    for _ in range(3):  # summed over batches on the host
        labels, predictions, mask = _case(rng, num_classes=6)
        # class 5 never occurs (truth or prediction): it must leave the mean alone
        labels[labels == 5], predictions[predictions == 5] = 0, 1
        total = accumulate(total, confusion_matrix(labels, predictions, 6, mask=mask))
    assert total.dtype == np.int64
    got = SegmentationMetrics.from_confusion(total)
    miou, accuracy, ious = _reference_metrics(total)
    assert np.isnan(got.per_class_iou[5])
    np.testing.assert_allclose(got.per_class_iou[:5], ious[:5], rtol=1e-12)
    assert got.mean_iou == pytest.approx(miou, rel=1e-12)
    assert got.pixel_accuracy == pytest.approx(accuracy, rel=1e-12)
    assert got.num_pixels == total.sum()


def test_hand_computed_case_and_predicted_but_absent_class_counts_zero():
    # truth 0: 3 px (2 right, 1 called 2); truth 1: 1 px (right); class 2 never true.
    labels = jnp.array([[[0, 0, 0, 1, IGNORE_LABEL]]])
    predictions = jnp.array([[[0, 0, 2, 1, 2]]])
    m = np.asarray(confusion_matrix(labels, predictions, 4))
    np.testing.assert_array_equal(m, [[2, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    got = SegmentationMetrics.from_confusion(m)
    assert got.per_class_iou[:3] == (2 / 3, 1.0, 0.0) and np.isnan(got.per_class_iou[3])
    assert got.mean_iou == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert got.pixel_accuracy == pytest.approx(3 / 4)
    assert got.mean_accuracy == pytest.approx((2 / 3 + 1) / 2)
    d = got.as_dict("eval_", ("a", "b", "c", "d"))
    assert d["eval_iou/b"] == 1.0 and d["eval_mean_iou"] == got.mean_iou
