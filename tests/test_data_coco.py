"""The tfds coco/2017 detection pipeline under tfds.testing.mock_data (no download)."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from mobilenet_jax.data import HostLayout
from mobilenet_jax.data.coco import NUM_CLASSES, CocoDetectionDataset, random_crop, random_flip
from mobilenet_jax.data.detection_layout import check_batch


def test_coco_pipeline_layout_and_resume_under_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        ds = CocoDetectionDataset(image_size=64, batch_size=4, eval_batch_size=4, seed=0,
                                  layout=HostLayout(0, 1, 2), shuffle_buffer=8, max_boxes=10)
        it = ds.train_batches(0)
        first = [next(it) for _ in range(3)]
        again = next(ds.train_batches(2))
        evals = list(ds.eval_batches())
    b = first[0]
    assert b["image"].shape == (2, 2, 64, 64, 3) and b["image"].dtype == np.float32
    assert b["boxes"].shape == (2, 2, 10, 4) and b["labels"].shape == b["box_mask"].shape == (2, 2, 10)
    for batch in first + evals:
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items() if k != "mask"}
        check_batch(flat, NUM_CLASSES, 64)  # valid boxes, labels 1..80, padding last
        assert (flat["labels"][~flat["box_mask"]] == 0).all()
    assert sum(int(b["box_mask"].sum()) for b in first) > 0
    np.testing.assert_allclose(again["boxes"], first[2]["boxes"])
    assert len(evals) == 3 and evals[0]["mask"].shape == (2, 2)
    # Crowds: out of the training batches, flagged (and kept) in the evaluation batches.
    assert "is_crowd" not in first[0]
    crowd = np.concatenate([e["is_crowd"].reshape(-1, 10) for e in evals])
    valid = np.concatenate([e["box_mask"].reshape(-1, 10) for e in evals])
    assert crowd.shape == valid.shape and not (crowd & ~valid).any()


def test_crop_keeps_objects_whose_centre_is_inside_and_flip_mirrors_boxes():
    tf = pytest.importorskip("tensorflow")
    image = tf.zeros((100, 200, 3), tf.uint8)
    boxes = tf.constant([[0.1, 0.1, 0.3, 0.5], [0.6, 0.5, 0.9, 0.9]])
    labels = tf.constant([1, 2])
    seen = set()
    for i in range(20):
        seed = tf.constant([0, i], tf.int64)
        crop, b, l = random_crop(tf, image, boxes, labels, seed)
        b = b.numpy()
        assert ((b >= 0) & (b <= 1)).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        seen.add(len(b))
        assert crop.shape[0] * crop.shape[1] >= 0.1 * 100 * 200 - 1
    assert seen & {1, 2}
    flipped, fb = random_flip(tf, image, boxes, tf.constant([1, 0], tf.int64))
    fb = fb.numpy()
    if not np.allclose(fb, boxes.numpy()):
        np.testing.assert_allclose(fb[0], [0.7, 0.1, 0.9, 0.5], atol=1e-6)
