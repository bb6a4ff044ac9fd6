"""The papers' optimizer recipes: TF1 RMSProp, schedules, weight-decay mask."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests._train_helpers import tiny_config
from mobilenet_jax import create_model
from mobilenet_jax.train.optim import (
    Durations, build_optimizer, learning_rate_schedule, tf_rmsprop,
    weight_decay_mask,
)


def _tf1_rmsprop_reference(w, grads, lr, decay, momentum, eps):
    """tf.compat.v1.train.RMSPropOptimizer's documented update, ms initialised to 1."""
    ms, mom = np.ones_like(w), np.zeros_like(w)
    for g in grads:
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        w = w - mom
    return w


def test_tf_rmsprop_matches_tf1_update_rule():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=5).astype(np.float64)
    grads = [rng.normal(size=5) * 3 for _ in range(6)]
    for eps in (1.0, 1e-3):
        tx = tf_rmsprop(0.05, decay=0.9, momentum=0.9, epsilon=eps)
        w, state = jnp.asarray(w0, jnp.float32), None
        state = tx.init(w)
        for g in grads:
            u, state = tx.update(jnp.asarray(g, jnp.float32), state, w)
            w = optax.apply_updates(w, u)
        np.testing.assert_allclose(w, _tf1_rmsprop_reference(w0, grads, 0.05, 0.9, 0.9, eps), rtol=1e-5)
    # Keras-style RMSprop (accumulator from 0) is a different optimizer: the test can tell.
    keras_like = optax.rmsprop(0.05, decay=0.9, eps=1e-3, momentum=0.9)
    s = keras_like.init(jnp.asarray(w0, jnp.float32))
    u, _ = keras_like.update(jnp.asarray(grads[0], jnp.float32), s)
    first_tf = _tf1_rmsprop_reference(w0, grads[:1], 0.05, 0.9, 0.9, 1e-3) - w0
    assert not np.allclose(u, first_tf, rtol=1e-2)


def test_tf_rmsprop_matches_tensorflow_itself():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=4).astype(np.float32)
    grads = [rng.normal(size=4).astype(np.float32) for _ in range(4)]
    var = tf.Variable(w0)
    opt = tf.compat.v1.train.RMSPropOptimizer(0.1, decay=0.9, momentum=0.9, epsilon=1.0)
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])
    tx = tf_rmsprop(0.1, decay=0.9, momentum=0.9, epsilon=1.0)
    w = jnp.asarray(w0)
    state = tx.init(w)
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state, w)
        w = optax.apply_updates(w, u)
    np.testing.assert_allclose(w, var.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "rate, epochs, step, expected",
    [
        (0.98, 1.0, 99, 1.0),  # V2: staircase per epoch, still epoch 0
        (0.98, 1.0, 100, 0.98),
        (0.98, 1.0, 1050, 0.98**10),
        (0.94, 2.0, 199, 1.0),  # Xception: x0.94 every 2 epochs
        (0.94, 2.0, 400, 0.94**2),
        (0.99, 3.0, 600, 0.99**2),  # V3: every 3 epochs
    ],
)
def test_staircase_exponential_decay(rate, epochs, step, expected):
    config = tiny_config(lr_schedule="exponential", learning_rate=0.045, lr_decay_rate=rate,
                         lr_decay_epochs=epochs, lr_staircase=True, warmup_steps=0)
    schedule = learning_rate_schedule(config, Durations(100, 10_000, 0))
    np.testing.assert_allclose(schedule(step), 0.045 * expected, rtol=1e-5)


def test_warmup_then_cosine_and_batch_scaling():
    config = tiny_config(lr_schedule="cosine", learning_rate=0.1, warmup_steps=10,
                         lr_base_batch_size=8)  # batch 16 -> peak 0.2
    schedule = learning_rate_schedule(config, Durations(10, 110, 10))
    np.testing.assert_allclose(schedule(0), 0.0, atol=1e-8)
    np.testing.assert_allclose(schedule(5), 0.1, rtol=1e-5)
    np.testing.assert_allclose(schedule(10), 0.2, rtol=1e-5)
    np.testing.assert_allclose(schedule(60), 0.1, rtol=1e-4)  # half-way down the cosine
    np.testing.assert_allclose(schedule(110), 0.0, atol=1e-6)


def test_weight_decay_mask_on_mobilenet_v2_tree():
    model = create_model("mobilenet_v2", num_classes=10, width=0.35)
    params = jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)
    )["params"]
    mask = weight_decay_mask(params, exclude_depthwise=True, exclude_bn_and_bias=True)
    flat = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert flat["['blocks_1']['expand']['conv']['kernel']"] is True
    assert flat["['blocks_1']['depthwise']['conv']['kernel']"] is False
    assert flat["['blocks_1']['depthwise']['bn']['scale']"] is False
    assert flat["['classifier']['bias']"] is False
    assert flat["['classifier']['kernel']"] is True
    n_depthwise = sum("depthwise" in k and k.endswith("['kernel']") for k in flat)
    assert n_depthwise == 17  # one per inverted-residual block (Table 2: 1+2+3+4+3+3+1)
    mask_all = weight_decay_mask(params, exclude_depthwise=False, exclude_bn_and_bias=False)
    assert all(jax.tree_util.tree_leaves(mask_all))


def test_weight_decay_is_l2_gradient_on_kernels_only():
    config = tiny_config(optimizer="sgd", momentum=0.0, learning_rate=1.0, weight_decay=0.1,
                         warmup_steps=0, lr_schedule="constant")
    tx, _ = build_optimizer(config, Durations(10, 100, 0))
    params = {"conv": {"kernel": jnp.ones((1, 1, 2, 2))}, "bn": {"scale": jnp.ones(2)}}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["conv"]["kernel"], -0.1)  # -lr * wd * w
    np.testing.assert_allclose(updates["bn"]["scale"], 0.0)
