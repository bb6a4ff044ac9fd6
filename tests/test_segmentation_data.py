"""The embedded segmentation set, its augmentation, the batch checks and the mask figures."""
import numpy as np
import pytest

from mobilenet_jax.data import DatasetInfo, HostLayout
from mobilenet_jax.data import embedded_segmentation as es
from mobilenet_jax.data.segmentation_augment import SegmentationAugment, augment, scale_crop
from mobilenet_jax.segmentation.layout import IGNORE_LABEL, SegmentationInputError, check_batch, check_example
from mobilenet_jax.segmentation.visualize import colorize, comparison_figure, palette, to_uint8


def test_embedded_segmentation_is_deterministic_split_apart_and_labels_the_shapes():
    a = es.make_split("train", 12, 48, seed=0)
    b = es.make_split("train", 12, 48, seed=0)
    for key in ("image", "segmentation"):
        np.testing.assert_array_equal(a[key], b[key])
    others = [es.make_split(s, 12, 48, seed=0) for s in ("validation", "eval")]
    others.append(es.make_split("train", 12, 48, seed=1))
    assert all(not np.allclose(a["image"], o["image"]) for o in others)
    assert a["image"].shape == (12, 48, 48, 3) and a["image"].dtype == np.float32
    assert a["segmentation"].shape == (12, 48, 48) and a["segmentation"].dtype == np.int32
    assert -1 <= a["image"].min() and a["image"].max() <= 1
    seg = a["segmentation"]
    assert set(np.unique(seg)) <= set(range(11)) | {IGNORE_LABEL}
    assert (seg == 0).any() and (seg == IGNORE_LABEL).any() and ((seg > 0) & (seg < 11)).any()
    # The labels follow the pixels: shape pixels differ in colour from the background's.
    for img, s in zip(a["image"], seg):
        if (s == 0).sum() and ((s > 0) & (s < 11)).sum():
            bg = np.median(img[s == 0], axis=0)
            fg = img[(s > 0) & (s < 11)]
            assert np.abs(fg - bg).mean(axis=1).mean() > 0.3


def test_ignore_band_lies_on_outlines_and_follows_the_knob():
    # a disk only (class index 0 -> label 1): the band is the ring between disk and background
    d = es.make_split("train", 6, 64, seed=3, classes=(0,), max_objects=1, min_size=0.3)
    seg = d["segmentation"]
    for s in seg:
        band = s == IGNORE_LABEL
        assert band.any()
        # every band pixel touches both a shape pixel and a background pixel within 2 pixels
        padded = np.pad(s, 2, constant_values=0)
        near = lambda v: np.any([padded[2 + dy: 66 + dy, 2 + dx: 66 + dx] == v  # noqa: E731
                                 for dy in range(-2, 3) for dx in range(-2, 3)], axis=0)
        assert (near(0)[band] & near(1)[band]).all()
        # a thin band: a ring about 1 pixel wide, not a blob
        assert band.sum() < 0.5 * (s == 1).sum()
    none = es.make_split("train", 6, 64, seed=3, classes=(0,), max_objects=1, min_size=0.3, boundary=0)
    wide = es.make_split("train", 6, 64, seed=3, classes=(0,), max_objects=1, min_size=0.3, boundary=3)
    assert not (none["segmentation"] == IGNORE_LABEL).any()
    assert (wide["segmentation"] == IGNORE_LABEL).sum() > 2 * (seg == IGNORE_LABEL).sum()


def test_noise_knob_changes_only_the_pixel_noise():
    quiet = es.make_split("eval", 8, 32, noise=(0.0, 0.0))
    loud = es.make_split("eval", 8, 32, noise=(0.3, 0.3))
    def spread(d):  # within-region pixel spread (noise), over the background
        return np.mean([img[s == 0].std(axis=0).mean() for img, s in zip(d["image"], d["segmentation"])])
    assert spread(quiet) < 1e-3 < 0.2 < spread(loud)
    with pytest.raises(ValueError, match="noise"):
        es.make_split("eval", 2, 32, noise=(0.2, 0.1))


def _colour_image(seg, table):
    return table[np.where(seg == IGNORE_LABEL, len(table) - 1, seg)]


def _blocks(rng, size=48, block=6):
    """A mask of random 6x6-pixel blocks of labels 0..10, a few pixels ignored."""
    seg = np.kron(rng.integers(0, 11, (size // block, size // block)), np.ones((block, block), np.int64))
    seg[rng.random(seg.shape) < 0.02] = IGNORE_LABEL
    return seg.astype(np.int32)


def test_augmentation_keeps_image_and_mask_aligned_and_pads_with_ignore():
    rng = np.random.default_rng(0)
    table = rng.uniform(-1, 1, (12, 3)).astype(np.float32)  # a colour per label; the last: ignore
    config = SegmentationAugment(min_scale=0.5, max_scale=2.0)
    flipped, fractions = 0, []
    for i in range(8):
        seg = _blocks(rng)
        image = _colour_image(seg, table)
        out, out_seg = augment(image, seg, np.random.default_rng([i]), config)
        assert out.shape == (48, 48, 3) and out_seg.shape == (48, 48) and out_seg.dtype == np.int32
        assert set(np.unique(out_seg)) <= set(np.unique(seg)) | {IGNORE_LABEL}  # nearest: no blended labels
        labelled = out_seg != IGNORE_LABEL
        # The image pixel's closest label colour is the mask's label (blends at block edges aside).
        closest = np.argmin(((out[..., None, :] - table[:11]) ** 2).sum(-1), axis=-1)
        fractions.append((closest == out_seg)[labelled].mean())
    assert min(fractions) > 0.8, fractions  # an image flipped apart from its mask: 0.1-0.3
    data = es.make_split("train", 1, 48, seed=0)
    # A flip alone (scale 1, whole image) is np.flip of both; 0.5x pads 3/4 with ignore / pad_value.
    seg = data["segmentation"][0]
    image = _colour_image(seg, table)
    for seed in range(6):
        out, out_seg = augment(image, seg, np.random.default_rng(seed), SegmentationAugment(1.0, 1.0))
        same = np.array_equal(out_seg, seg) and np.allclose(out, image)
        mirrored = np.array_equal(out_seg, seg[:, ::-1]) and np.allclose(out, image[:, ::-1])
        assert same or mirrored
        flipped += mirrored
    assert 0 < flipped < 6
    out, out_seg = scale_crop(image, seg, 0.5, (0.0, 0.0), (48, 48), pad_value=0.0)
    np.testing.assert_array_equal(out_seg[24:], IGNORE_LABEL)
    np.testing.assert_array_equal(out_seg[:, 24:], IGNORE_LABEL)
    np.testing.assert_array_equal(out[24:], 0.0)
    np.testing.assert_array_equal(out_seg[:24, :24], seg[1::2, 1::2])  # nearest: source pixel 2i + 1


def _dataset(layout, augmentation=SegmentationAugment()):
    return es.build(image_size=32, num_train=16, num_eval=5, batch_size=8, eval_batch_size=4, seed=0,
                    layout=layout, augmentation=augmentation)


def test_dataset_batches_shard_per_process_resume_and_pad_eval():
    single = _dataset(HostLayout(0, 1, 4))
    parts = [_dataset(HostLayout(p, 2, 2)) for p in range(2)]
    assert single.info.num_classes == 11
    for start in (0, 1, 3):  # 3 is in the second epoch
        full = next(single.train_batches(start))
        halves = [next(d.train_batches(start)) for d in parts]
        assert full["image"].shape == (4, 2, 32, 32, 3) and full["segmentation"].shape == (4, 2, 32, 32)
        assert full["segmentation"].dtype == np.int32
        for key in ("image", "segmentation"):
            np.testing.assert_array_equal(full[key], np.concatenate([h[key] for h in halves]))
        check_batch(full, 11, 32)
    it = single.train_batches(0)
    batches = [next(it) for _ in range(3)]
    np.testing.assert_array_equal(batches[2]["image"], next(single.train_batches(2))["image"])
    plain = next(_dataset(HostLayout(0, 1, 4), augmentation=None).train_batches(0))
    assert not np.array_equal(plain["segmentation"], batches[0]["segmentation"])  # augmentation is on
    evals = [list(d.eval_batches()) for d in parts]
    assert len(evals[0]) == len(evals[1]) == 2 and evals[0][0]["mask"].shape == (2, 1)
    assert sum(int(b["mask"].sum()) for part in evals for b in part) == 5
    assert "segmentation" in evals[0][0] and evals[0][0]["segmentation"].shape == (2, 1, 32, 32)


def test_input_errors_are_one_actionable_line():
    image = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(SegmentationInputError, match=r"shape \(4, 5\) but its image has shape \(4, 4, 3\)"):
        check_example(image, np.zeros((4, 5), np.int32), 3)
    seg = np.zeros((4, 4), np.int32)
    seg[0, 0], seg[1, 1], seg[2, 2] = 3, -1, IGNORE_LABEL
    with pytest.raises(SegmentationInputError, match=r"labels -1, 3 are outside \[0, 3\).*\(2 pixels\)") as e:
        check_example(image, seg, 3)
    assert "\n" not in str(e.value)
    seg[0, 0] = seg[1, 1] = 2
    check_example(image, seg, 3)  # the ignore label is allowed
    with pytest.raises(SegmentationInputError, match="integer"):
        check_example(image, seg.astype(np.float32), 3)
    with pytest.raises(SegmentationInputError, match="lacks"):
        check_batch({"image": image[None]}, 3)
    bad = {"image": es.make_split("eval", 2, 32)["image"], "segmentation": np.full((2, 32, 32), 11, np.int32)}
    info = DatasetInfo("embedded_segmentation", 2, 2, 11, 32)
    with pytest.raises(SegmentationInputError, match="11 are outside"):
        es.EmbeddedSegmentationDataset(info, bad, bad, batch_size=2, eval_batch_size=2, seed=0,
                                       layout=HostLayout(0, 1, 1))


def test_palette_and_colouring_pixel_values():
    p = palette(22)
    np.testing.assert_array_equal(p[:5], [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]])
    np.testing.assert_array_equal(p[8], [64, 0, 0])
    np.testing.assert_array_equal(p[15], [192, 128, 128])  # VOC's person
    np.testing.assert_array_equal(p[21], [128, 64, 128])  # 0b10101: R, B top bits; G next bit
    assert len({tuple(c) for c in p}) == 22
    seg = np.array([[0, 1, IGNORE_LABEL], [2, 2, 0]])
    colours = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    out = colorize(seg, colours, ignore_color=(1, 2, 3))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, [[[10, 20, 30], [40, 50, 60], [1, 2, 3]], [[70, 80, 90]] * 2 + [[10, 20, 30]]])
    with pytest.raises(SegmentationInputError, match="no colour"):
        colorize(np.array([[3]]), colours)
    np.testing.assert_array_equal(to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255])


def test_comparison_figure_shows_image_truth_and_prediction():
    data = es.make_split("eval", 2, 32)
    seg = data["segmentation"]
    pred = np.where(seg == IGNORE_LABEL, 0, seg)
    fig = comparison_figure(data["image"], seg, pred, num_classes=11)
    axes = fig.get_axes()
    assert len(axes) == 6 and [a.get_title() for a in axes[:3]] == ["image", "ground truth", "prediction"]
    shown = [np.asarray(a.get_images()[0].get_array()) for a in axes]
    np.testing.assert_array_equal(shown[0], to_uint8(data["image"][0]))
    np.testing.assert_array_equal(shown[1], colorize(seg[0], palette(11)))
    np.testing.assert_array_equal(shown[5], colorize(pred[1], palette(11)))
    assert len(comparison_figure(data["image"], seg).get_axes()) == 4
    with pytest.raises(SegmentationInputError, match="pixel for pixel"):
        comparison_figure(data["image"], seg[:, :16])
