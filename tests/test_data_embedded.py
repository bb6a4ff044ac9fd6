"""The embedded data set and the host-batch contract (per-process slices, exact eval)."""
import numpy as np

from mobilenet_jax.data import ArrayDataset, DatasetInfo, HostLayout, embedded


def test_embedded_is_deterministic_balanced_and_in_range():
    x1, y1 = embedded.make_split("train", 200, 32, seed=0)
    x2, y2 = embedded.make_split("train", 200, 32, seed=0)
    x3, _ = embedded.make_split("train", 200, 32, seed=1)
    xe, _ = embedded.make_split("eval", 200, 32, seed=0)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(x1, x3) and not np.allclose(x1, xe)
    assert x1.shape == (200, 32, 32, 3) and x1.dtype == np.float32 and y1.dtype == np.int32
    assert x1.min() >= -1 and x1.max() <= 1
    assert np.bincount(y1, minlength=10).tolist() == [20] * 10


def test_classes_differ_in_shape_not_colour():
    """Mean colour carries no label information: per-class mean pixels are all close."""
    x, y = embedded.make_split("train", 2000, 32, seed=0)
    class_means = np.stack([x[y == c].mean(axis=(0, 1, 2)) for c in range(10)])
    assert np.abs(class_means - class_means.mean(0)).max() < 0.1


def _dataset(layout, n_train=64, n_eval=10, batch=8, eval_batch=4):
    x, y = embedded.make_split("train", n_train, 32)
    xe, ye = embedded.make_split("eval", n_eval, 32)
    info = DatasetInfo("embedded", n_train, n_eval, 10, 32)
    return ArrayDataset(info, (x, y), (xe, ye), batch_size=batch, eval_batch_size=eval_batch,
                        seed=0, layout=layout)


def test_process_slices_tile_the_global_batch_and_resume_is_exact():
    single = _dataset(HostLayout(0, 1, 4))
    parts = [_dataset(HostLayout(p, 2, 2)) for p in range(2)]
    for start in (0, 7, 9):  # 9 crosses into the second epoch (8 steps per epoch)
        full = next(single.train_batches(start))
        halves = [next(d.train_batches(start)) for d in parts]
        assert full["image"].shape == (4, 2, 32, 32, 3)
        np.testing.assert_array_equal(
            full["image"], np.concatenate([h["image"] for h in halves], axis=0)
        )
    it = single.train_batches(0)
    batches = [next(it) for _ in range(10)]
    np.testing.assert_array_equal(batches[9]["label"], next(single.train_batches(9))["label"])
    epoch0 = np.concatenate([single.train_indices(s) for s in range(8)])
    assert sorted(epoch0.tolist()) == list(range(64))  # one epoch = a permutation


def test_eval_is_padded_and_masked_identically_on_every_process():
    parts = [list(_dataset(HostLayout(p, 2, 2)).eval_batches()) for p in range(2)]
    assert len(parts[0]) == len(parts[1]) == 3  # ceil(10 / 4)
    total = sum(int(b["mask"].sum()) for part in parts for b in part)
    assert total == 10
    labels = [b["label"][b["mask"]] for part in zip(*parts) for b in part]
    _, ye = embedded.make_split("eval", 10, 32)
    np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.sort(ye))
