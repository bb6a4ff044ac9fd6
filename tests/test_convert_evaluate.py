"""`python -m mobilenet_jax.convert` writes a trainer workdir that the trainer's own
checkpointing restores and that computes Keras's logits; `python -m mobilenet_jax.evaluate`
evaluates it exactly over a (mock) imagenet2012 split: every example counted once, the
padded tail masked, top-1/top-5 equal to numpy's on the same logits."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from tests._keras_weights import (
    fast_jit, keras_inputs, keras_logits, random_images, random_keras_model,
)

NAME, VARIANT, RES = "mobilenet_v1", dict(width=0.25), 32
NUM_EXAMPLES = 21  # mock validation split: 2 full batches of 8 and 5 real + 3 padded


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from mobilenet_jax import convert

    d = tmp_path_factory.mktemp("convert")
    keras_file = str(d / "v1.weights.h5")
    random_keras_model(NAME, RES, **VARIANT).save_weights(keras_file)
    out = str(d / "run")
    rc = convert.main([
        "--keras", keras_file, "--model", NAME, "--width", "0.25", "--num-classes", "10",
        "--image-size", str(RES), "--out", out,
    ])
    assert rc == 0
    return out


def test_converted_checkpoint_restores_in_the_trainer_and_computes_keras_logits(workdir):
    from mobilenet_jax.train.checkpoint import load_workdir_config, restore_variables
    from mobilenet_jax.train import Checkpoints, build_model, build_optimizer, create_train_state, resolve_durations

    config = load_workdir_config(workdir)
    assert config.model == NAME and config.model_kwargs.keras_padding is True
    assert config.image_size == RES and config.num_classes == 10 and config.dtype == "float32"
    model = build_model(config, config.num_classes)
    # Exactly what the trainer does on resume.
    tx, _ = build_optimizer(config, resolve_durations(config, 100))
    template = create_train_state(model, tx, jax.random.key(1), RES, use_ema=False)
    ckpts = Checkpoints(workdir, keep_best=False)
    try:
        state = ckpts.restore(template)
    finally:
        ckpts.close()
    assert int(state.step) == 0
    step, variables = restore_variables(workdir, model, RES)
    x = random_images(8, RES, seed=5)
    reference = random_keras_model(NAME, RES, **VARIANT)
    want = keras_logits(reference, keras_inputs(NAME, x))
    got = np.asarray(fast_jit(lambda v, x: model.apply(v, x, train=False),
                              {"params": state.params, "batch_stats": state.batch_stats}, x))
    assert np.max(np.abs(got - want)) <= 1e-4
    for a, b in zip(jax.tree_util.tree_leaves(variables["params"]), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_convert_cli_reports_the_first_offending_tensor(tmp_path, capsys):
    from mobilenet_jax import cli, convert

    keras_file = str(tmp_path / "v1.weights.h5")
    random_keras_model(NAME, RES, **VARIANT).save_weights(keras_file)
    rc = cli.run(convert.main, ["--keras", keras_file, "--model", NAME, "--width", "0.5",
                                "--num-classes", "10", "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "first problem: mis-shaped tensor conv1/kernel" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o" / "checkpoints")


def _mock_imagenet(data_dir: str):
    """tfds mock data for imagenet2012 with split sizes in its metadata (the evaluator reads
    them to size the padded last batch); labels < 10 to fit the 10-class network."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[NUM_EXAMPLES], num_bytes=0)
        for s in ("train", "validation")
    ]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    return tfds.testing.mock_data(
        num_examples=NUM_EXAMPLES, max_value=10, policy=tfds.testing.MockPolicy.USE_FILES,
        data_dir=data_dir,
    )


def test_evaluate_is_exact_over_the_mock_split(tmp_path, capsys):
    """A 1000-class network (random weights, the classifier biased towards a few of the
    mock labels so that top-1 and top-5 are neither 0 nor 1), written as a converter
    workdir, evaluated by the CLI and by numpy on the same batches."""
    from mobilenet_jax import evaluate
    from mobilenet_jax.convert import trainer_config, write_checkpoint
    from mobilenet_jax.data.pipeline import host_layout
    from mobilenet_jax.data.tfds import TfdsDataset
    from mobilenet_jax.train import build_model

    data_dir = str(tmp_path / "tfds")
    with _mock_imagenet(data_dir):
        data = TfdsDataset("imagenet2012", image_size=RES, batch_size=8, eval_batch_size=8,
                           seed=0, layout=host_layout(), data_dir=data_dir)
        batches = list(data.eval_batches())
        labels = np.concatenate([b["label"].ravel() for b in batches])
        masks = np.concatenate([b["mask"].ravel() for b in batches])
        config = trainer_config(NAME, dict(width=0.25, keras_padding=True), 1000, RES)
        model = build_model(config, 1000)
        variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
            np.zeros((1, RES, RES, 3), np.float32))
        variables = jax.tree_util.tree_map(np.array, variables)
        bias = variables["params"]["classifier"]["bias"]
        for rank, label in enumerate(labels[masks][:7]):
            bias[label] += 0.05 * (7 - rank)
        workdir = str(tmp_path / "run")
        write_checkpoint(config, variables, workdir)
        assert evaluate.main(["--checkpoint", workdir, "--dataset", "imagenet2012",
                              "--data-dir", data_dir, "--batch-size", "8"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    images = np.concatenate([b["image"].reshape((-1,) + b["image"].shape[2:]) for b in batches])
    logits = np.asarray(fast_jit(lambda v, x: model.apply(v, x, train=False), variables, images))
    assert len(masks) == 24 and masks.sum() == NUM_EXAMPLES  # 3 batches; 3 padded examples
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    want_top1 = float(np.sum((logits.argmax(-1) == labels) & masks)) / NUM_EXAMPLES
    want_top5 = float(np.sum((top5 == labels[:, None]).any(-1) & masks)) / NUM_EXAMPLES
    print(f"\nmock imagenet2012: {result}; numpy: top1 {want_top1:.4f} top5 {want_top5:.4f}")
    assert result["num_examples"] == NUM_EXAMPLES
    assert result["image_size"] == RES and result["model"] == NAME
    assert 0 < want_top1 < want_top5 < 1
    assert result["top1"] == pytest.approx(want_top1, abs=1e-6)
    assert result["top5"] == pytest.approx(want_top5, abs=1e-6)
