"""Detection through the trainer's steps: the pmapped SSD step on 8 devices equals 1 device,
and a short training on the embedded detection set reaches a measured AP50."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests._train_helpers import assert_trees_close_to_scale
from mobilenet_jax.data.embedded_detection import make_split
from mobilenet_jax.data.pipeline import AXIS
from mobilenet_jax.tasks.detection import DetectionTask
from mobilenet_jax.models import create_model
from mobilenet_jax.train import create_train_state, make_train_step, pmap_train_step

SIZE = 64


def _model(num_classes=10):
    return create_model("ssdlite", backbone="mobilenet_v1", width=0.25, num_classes=num_classes,
                        bn_axis_name=AXIS)  # cross-replica BatchNorm, as the trainer builds it


def test_detection_step_on_8_devices_equals_one_device():
    assert jax.local_device_count() >= 8, "conftest should give 8 fake CPU devices"
    model = _model()
    task = DetectionTask(model, SIZE)
    tx = optax.sgd(1e-3, momentum=0.9)
    host_state = jax.device_get(create_train_state(model, tx, jax.random.key(0), SIZE, use_ema=False))
    data = make_split("train", 16, SIZE, seed=5)
    data["box_mask"][3] = False  # an image without objects in the batch
    step = pmap_train_step(make_train_step(model, tx, lambda s: 1e-3, loss_fn=task.loss_fn()))
    results = {}
    for n in (8, 1):
        batch = {k: v.reshape((n, 16 // n) + v.shape[1:]) for k, v in data.items()}
        state = jax.tree_util.tree_map(jnp.asarray, host_state)
        results[n] = jax.device_get(step(state, batch))
    (s8, m8), (s1, m1) = results[8], results[1]
    moved = jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), s1.params, host_state.params)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4
    for name in ("params", "batch_stats", "opt_state"):
        assert_trees_close_to_scale(getattr(s8, name), getattr(s1, name), 2e-3, name)
    for k in ("loss", "localization_loss", "classification_loss", "positives_per_image"):
        np.testing.assert_allclose(m8[k], m1[k], rtol=1e-4, err_msg=k)


def test_config_pairs_detection_data_with_a_detector():
    from mobilenet_jax.train import ConfigError, load_config, validate_config

    config = load_config("configs/detection_embedded.py")
    validate_config(config, num_devices=1)
    for overrides in ({"model": "mobilenet_v2", "model_kwargs": {"width": 0.35}},
                      {"dataset": "embedded"}):
        bad = load_config("configs/detection_embedded.py", overrides)
        try:
            validate_config(bad, num_devices=1)
        except ConfigError as e:
            assert "do not make a task" in str(e)
        else:
            raise AssertionError(f"{overrides} was accepted")


def test_trainer_trains_a_detector_to_a_measured_ap50(tmp_path):
    """Through the one trainer (checkpoints, eval, metrics): SSDLite-MobileNetV1-0.25 at
    64x64, 100 Adam steps of 32 images of an easy embedded set (3 shapes, 1-2 large objects
    per image), the data set built from the config. AP50 measured 0.025 (AP 0.005; untrained:
    ~1e-4); the test asks for 0.01. SSD learns slowly at 64x64: C4 is a 4x4 grid, so most
    objects are matched only through their forced best anchor (loss 12 -> ~6 here)."""
    from mobilenet_jax.train import load_config, train_and_evaluate

    config = load_config("configs/detection_embedded.py", {
        "num_train_steps": 100, "num_devices": 1, "eval_every_steps": 0,
        "checkpoint_every_steps": 0, "progress_bar": False, "tensorboard": False,
        "embedded_num_train": 2048, "embedded_num_eval": 128, "eval_batch_size": 64,
        "embedded_detection_classes": (0, 2, 6), "embedded_detection_max_objects": 2,
        "embedded_detection_object_size": (0.3, 0.5), "log_every_steps": 10})
    result = train_and_evaluate(config, str(tmp_path))
    print(f"AP50 {result['eval_AP50']:.4f} AP {result['eval_AP']:.4f}")
    assert result["step"] == 100 and result["train_loss"] < 0.6 * read_train_loss(tmp_path)
    assert result["eval_AP50"] >= 0.01, result
    assert (tmp_path / "best").is_dir() and (tmp_path / "checkpoints").is_dir()
    # The evaluation command on the run's workdir: the same COCO numbers from its final checkpoint
    # (on 8 devices, another batch size), and a classification data set refused in one line.
    from mobilenet_jax import evaluate

    again = evaluate.evaluate_checkpoint(str(tmp_path), batch_size=16)
    assert again["step"] == 100 and again["dataset"] == "embedded_detection"
    for k in ("AP", "AP50", "AP75"):
        assert abs(again[k] - result[f"eval_{k}"]) < 1e-4, (k, again[k], result[f"eval_{k}"])
    with pytest.raises(evaluate.EvaluationError, match="do not make a task: 'imagenet2012' is a classification"):
        evaluate.evaluate_checkpoint(str(tmp_path), "imagenet2012")


def read_train_loss(workdir) -> float:
    from mobilenet_jax.train import read_metrics

    return next(m["loss"] for m in read_metrics(str(workdir)) if m["split"] == "train")
