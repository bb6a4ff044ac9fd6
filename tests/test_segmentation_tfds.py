"""The tfds Cityscapes reader under tfds.testing.mock_data (no download) and the tf.data
augmentation."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
tf = pytest.importorskip("tensorflow")

from mobilenet_jax.data import HostLayout
from mobilenet_jax.data.prepare import DataError, prepare
from mobilenet_jax.data.segmentation_augment import SegmentationAugment, tf_augment
from mobilenet_jax.data.tfds_segmentation import (
    CITYSCAPES, CITYSCAPES_TRAIN_IDS, TfdsSegmentationDataset, label_table,
)
from mobilenet_jax.segmentation.layout import IGNORE_LABEL, SegmentationInputError, check_batch


def test_cityscapes_label_ids_map_to_19_train_ids():
    table = label_table(CITYSCAPES_TRAIN_IDS)
    assert table.shape == (256,) and table[7] == 0 and table[26] == 13 and table[33] == 18  # road, car, bicycle
    assert sorted(table[table != IGNORE_LABEL].tolist()) == list(range(19))
    assert (table[[0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]] == IGNORE_LABEL).all()  # void classes
    assert (table[34:] == IGNORE_LABEL).all()


def _dataset(layout, **kw):
    args = dict(crop_size=32, batch_size=4, eval_batch_size=4, seed=0, layout=layout, shuffle_buffer=4,
                eval_size=(32, 64))
    return TfdsSegmentationDataset(CITYSCAPES, **{**args, **kw})


def test_cityscapes_pipeline_layout_resume_and_eval_under_mock_data():
    # mock_data draws random frames of the builder's features: 1024x2048 images, label ids 0..255.
    with tfds.testing.mock_data(num_examples=6):
        ds = _dataset(HostLayout(0, 2, 2))  # process 0 of 2, two local devices
        it = ds.train_batches(0)
        first = [next(it) for _ in range(3)]
        again = next(ds.train_batches(2))
        evals = list(ds.eval_batches())
    assert ds.info.num_classes == 19 and ds.info.num_train == 6
    b = first[0]
    assert b["image"].shape == (2, 1, 32, 32, 3) and b["image"].dtype == np.float32
    assert b["segmentation"].shape == (2, 1, 32, 32) and b["segmentation"].dtype == np.int32
    assert -1 <= b["image"].min() and b["image"].max() <= 1 and b["image"].std() > 0.05
    labels = np.concatenate([x["segmentation"].ravel() for x in first])
    assert set(np.unique(labels)) <= set(range(19)) | {IGNORE_LABEL}
    assert (labels != IGNORE_LABEL).any() and (labels == IGNORE_LABEL).any()  # ids 34..255 are void
    np.testing.assert_array_equal(again["segmentation"], first[2]["segmentation"])
    np.testing.assert_allclose(again["image"], first[2]["image"], atol=1e-6)
    assert len(evals) == 2  # ceil(3 of 6 per process / 2 per batch)
    for e in evals:
        assert e["image"].shape == (2, 1, 32, 64, 3) and e["segmentation"].shape == (2, 1, 32, 64)
        assert e["mask"].shape == (2, 1) and e["mask"].dtype == bool
        check_batch(e, 19)


def test_cityscapes_eval_at_native_size_is_the_label_map_of_the_raw_mask():
    with tfds.testing.mock_data(num_examples=2):
        ds = _dataset(HostLayout(0, 1, 1), eval_batch_size=1, eval_size=None, num_eval_steps=1)
        batch = next(ds.eval_batches())
        raw = next(iter(tfds.builder(CITYSCAPES).as_dataset(split="validation", shuffle_files=False)))
    assert batch["segmentation"].shape == (1, 1, 1024, 2048)
    want = label_table(CITYSCAPES_TRAIN_IDS)[raw["segmentation_label"].numpy()[..., 0]]
    np.testing.assert_array_equal(batch["segmentation"][0, 0], want)
    np.testing.assert_allclose(batch["image"][0, 0], raw["image_left"].numpy() / 127.5 - 1, atol=1e-5)


def test_a_mask_of_another_size_than_its_image_is_one_line_error(monkeypatch):
    with tfds.testing.mock_data(num_examples=2):
        ds = _dataset(HostLayout(0, 1, 1), batch_size=1)
    bad = tf.data.Dataset.from_tensors({"image_left": tf.zeros((40, 50, 3), tf.uint8),
                                        "segmentation_label": tf.zeros((40, 51, 1), tf.uint8)})
    monkeypatch.setattr(ds, "_read", lambda split, shuffle_files: bad)
    with pytest.raises(SegmentationInputError, match="differ in height and width") as e:
        next(ds.train_batches(0))
    assert "\n" not in str(e.value)


def test_tf_augment_keeps_image_and_mask_aligned_and_pads_with_ignore():
    rng = np.random.default_rng(0)
    table = rng.uniform(-1, 1, (11, 3)).astype(np.float32)
    fractions, flips = [], 0
    for i in range(8):
        seg = np.kron(rng.integers(0, 11, (8, 12)), np.ones((6, 6), np.int64)).astype(np.int32)  # 48x72
        image = table[seg]
        out, out_seg = tf_augment(tf, tf.constant(image), tf.constant(seg), tf.constant([0, i], tf.int64),
                                  SegmentationAugment(), (40, 40))
        out, out_seg = out.numpy(), out_seg.numpy()
        assert out.shape == (40, 40, 3) and out_seg.shape == (40, 40) and out_seg.dtype == np.int32
        assert set(np.unique(out_seg)) <= set(np.unique(seg)) | {IGNORE_LABEL}
        labelled = out_seg != IGNORE_LABEL
        # Padding: pad_value in the image, past the one-pixel blend at the image's edge.
        near = np.pad(labelled, 1)
        near = np.any([near[1 + dy: 41 + dy, 1 + dx: 41 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        np.testing.assert_array_equal(out[~near], 0.0)
        closest = np.argmin(((out[..., None, :] - table) ** 2).sum(-1), axis=-1)
        fractions.append((closest == out_seg)[labelled].mean())
    assert min(fractions) > 0.8, fractions
    # Scale exactly 1 over the whole image: the image or its mirror, mask with it.
    seg = np.kron(rng.integers(0, 11, (4, 4)), np.ones((4, 4), np.int64)).astype(np.int32)
    for i in range(6):
        out, out_seg = tf_augment(tf, tf.constant(table[seg]), tf.constant(seg), tf.constant([1, i], tf.int64),
                                  SegmentationAugment(1.0, 1.0), (16, 16))
        mirrored = np.array_equal(out_seg.numpy(), seg[:, ::-1]) and np.allclose(out.numpy(), table[seg][:, ::-1])
        assert mirrored or (np.array_equal(out_seg.numpy(), seg) and np.allclose(out.numpy(), table[seg]))
        flips += mirrored
    assert 0 < flips < 6
    # A 0.25x window of a 16x16 image into a 16x16 crop: at most a 4x4 corner is image.
    _, small = tf_augment(tf, tf.constant(table[seg]), tf.constant(seg), tf.constant([2, 0], tf.int64),
                          SegmentationAugment(0.25, 0.25, flip=False), (16, 16))
    assert (small.numpy() != IGNORE_LABEL).sum() <= 16 and (small.numpy() == IGNORE_LABEL).sum() >= 240


def test_prepare_cityscapes_without_archives_names_the_manual_dir(tmp_path):
    with pytest.raises(DataError, match=r"download its archives by hand into .*downloads/manual.*"
                                        r"leftImg8bit_trainvaltest.zip.*--data-dir") as e:
        prepare(CITYSCAPES, str(tmp_path))
    assert "\n" not in str(e.value)
