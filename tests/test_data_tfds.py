"""The tfds pipeline end to end under tfds.testing.mock_data (no download)."""
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from tests._train_helpers import tiny_config
from mobilenet_jax.data import HostLayout, build_dataset
from mobilenet_jax.train import train_and_evaluate


@pytest.mark.parametrize("name, size", [("imagenet2012", 64), ("cifar10", 32)])
def test_tfds_pipeline_under_mock_data(name, size):
    config = tiny_config(dataset=name, image_size=size, batch_size=8, eval_batch_size=8,
                         shuffle_buffer=16, num_eval_steps=2)
    with tfds.testing.mock_data(num_examples=20):
        layout = HostLayout(0, 2, 2)  # process 0 of 2, two local devices
        ds = build_dataset(config, layout)
        train = ds.train_batches(0)
        first = [next(train) for _ in range(3)]
        again = next(ds.train_batches(2))  # resume at step 2: the same batch
        evals = list(ds.eval_batches())
    b = first[0]
    assert b["image"].shape == (2, 2, size, size, 3) and b["image"].dtype == np.float32
    assert b["label"].shape == (2, 2) and b["label"].dtype == np.int32
    assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0 and b["image"].std() > 0.05
    assert ds.info.num_classes == (1000 if name == "imagenet2012" else 10)
    np.testing.assert_array_equal(again["label"], first[2]["label"])
    np.testing.assert_allclose(again["image"], first[2]["image"], atol=1e-6)
    assert len(evals) == 2 and evals[0]["mask"].shape == (2, 2)


def test_train_on_mock_cifar10(tmp_path):
    config = tiny_config(dataset="cifar10", num_devices=1, num_train_steps=2, num_eval_steps=2,
                         eval_every_steps=0, checkpoint_every_steps=0, warmup_steps=0,
                         shuffle_buffer=16, batch_size=8, eval_batch_size=8)
    with tfds.testing.mock_data(num_examples=24):
        result = train_and_evaluate(config, str(tmp_path))
    assert result["step"] == 2
    assert result["eval_num_examples"] == 16
    assert np.isfinite(result["train_loss"])
