"""Detection through the trainer's steps: the pmapped SSD step on 8 devices equals 1 device,
and a short training on the embedded detection set reaches a measured AP50."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from tests._train_helpers import assert_trees_close_to_scale
from mobilenet_jax.data.embedded_detection import make_split
from mobilenet_jax.data.pipeline import device_mesh
from mobilenet_jax.detection.task import DetectionTask
from mobilenet_jax.models import create_model
from mobilenet_jax.train import create_train_state, make_train_step, pmap_train_step

SIZE = 64


def _model(num_classes=10):
    return create_model("ssdlite", backbone="mobilenet_v1", width=0.25, num_classes=num_classes,
                        bn_axis_name="batch")  # cross-replica BatchNorm, as the trainer builds it


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
