"""Sizes and shapes against keras.applications itself."""
from __future__ import annotations

import re
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import pytest

import mobilenet_jax
from mobilenet_jax.sizes import abstract_variables, count_leaves, count_madds
from tests.keras_reference import keras_madds, keras_model, non_trainable_count, numbered, trainable_count

COUNT_CASES = (
    [("mobilenet_v1", dict(width=w)) for w in (0.25, 0.5, 0.75, 1.0)]
    + [("mobilenet_v1", dict(width=0.5, depth_multiplier=2))]
    + [("mobilenet_v2", dict(width=w)) for w in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)]
    + [
        (name, dict(width=w, minimalistic=m))
        for name in ("mobilenet_v3_large", "mobilenet_v3_small")
        for w in (0.75, 1.0)
        for m in (False, True)
    ]
    + [("xception", {})]
)


def _case_id(case) -> str:
    name, kw = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("case", COUNT_CASES, ids=_case_id)
def test_param_and_batch_stat_counts_equal_keras(case):
    name, overrides = case
    reference = keras_model(name, **overrides, resolution=299 if name == "xception" else 224)
    ours = abstract_variables(mobilenet_jax.create_model(name, **overrides), 96)
    assert count_leaves(ours["params"]) == trainable_count(reference)
    assert count_leaves(ours["batch_stats"]) == non_trainable_count(reference)


@pytest.mark.parametrize(
    "name,resolution", [("mobilenet_v1", 224), ("mobilenet_v2", 224), ("mobilenet_v3_large", 224),
                        ("mobilenet_v3_small", 224), ("xception", 299)]
)
def test_madds_within_half_percent_of_keras(name, resolution):
    ours = count_madds(mobilenet_jax.create_model(name), resolution)
    reference = keras_madds(keras_model(name, resolution=resolution))
    assert abs(ours - reference) <= 0.005 * reference, (ours, reference)


# ------------------------------------------------------------------------------------------
# Per-layer output shapes: every Keras BatchNorm layer (and the classifier) mapped by name to
# the BatchNorm (or Dense) of ours that computes the same tensor.
# ------------------------------------------------------------------------------------------


def _v2_path(layer: str) -> Optional[str]:
    if layer == "bn_Conv1":
        return "stem/bn"
    if layer == "Conv_1_bn":
        return "last_conv/bn"
    if m := re.fullmatch(r"expanded_conv_(depthwise|project)_BN", layer):
        return f"blocks_0/{m.group(1)}/bn"
    if m := re.fullmatch(r"block_(\d+)_(expand|depthwise|project)_BN", layer):
        return f"blocks_{m.group(1)}/{m.group(2)}/bn"
    return None


def _v3_path(layer: str) -> Optional[str]:
    fixed = {"conv_bn": "stem/bn", "conv_1_bn": "last_conv/bn", "conv_2": "pre_logits"}
    if layer in fixed:
        return fixed[layer]
    m = re.fullmatch(r"expanded_conv_(?:(\d+)_)?(expand_bn|depthwise_bn|project_bn|squeeze_excite_conv|squeeze_excite_conv_1)", layer)
    if m:
        unit = {"expand_bn": "expand/bn", "depthwise_bn": "depthwise/bn", "project_bn": "project/bn",
                "squeeze_excite_conv": "squeeze_excite/reduce",
                "squeeze_excite_conv_1": "squeeze_excite/expand"}[m.group(2)]
        return f"blocks_{m.group(1) or 0}/{unit}"
    return None


def _xception_path(layer: str) -> Optional[str]:
    if m := re.fullmatch(r"block1_conv(\d)_bn", layer):
        return f"stem_{int(m.group(1)) - 1}/bn"
    if m := re.fullmatch(r"block(\d+)_sepconv(\d)_bn", layer):
        block, conv = int(m.group(1)), int(m.group(2)) - 1
        return f"exit_{conv}/bn" if block == 14 else f"blocks_{block - 2}/sepconv_{conv}/bn"
    return None


XCEPTION_SHORTCUT_BLOCKS = (0, 1, 2, 11)


def _our_shapes(model, resolution: int) -> dict[str, tuple[int, ...]]:
    x = jax.ShapeDtypeStruct((2, resolution, resolution, 3), jnp.float32)
    variables = abstract_variables(model, resolution)
    _, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"]),
        variables, x,
    )
    flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
    shapes = {}
    for path, leaf in flat:
        keys = [p.key for p in path if hasattr(p, "key")]
        if keys[-1] == "__call__":
            shapes["/".join(keys[:-1])] = tuple(leaf.shape[1:])
    return shapes


@pytest.mark.parametrize(
    "name,resolution,to_path",
    [("mobilenet_v2", 224, _v2_path), ("mobilenet_v3_large", 224, _v3_path), ("xception", 299, _xception_path)],
)
def test_per_layer_output_shapes_equal_keras(name, resolution, to_path: Callable):
    import keras

    reference = keras_model(name, resolution=resolution)
    ours = _our_shapes(mobilenet_jax.create_model(name), resolution)
    pairs = [(layer, to_path(layer.name)) for layer in reference.layers]
    pairs = [(layer, path) for layer, path in pairs if path is not None]
    if name == "xception":
        shortcut_bns = numbered("batch_normalization", reference)
        pairs += [(bn, f"blocks_{b}/shortcut/bn") for bn, b in zip(shortcut_bns, XCEPTION_SHORTCUT_BLOCKS, strict=True)]
    pairs.append((reference.get_layer("predictions"), "classifier"))

    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in reference.layers)
    assert sum(path.endswith("/bn") for _, path in pairs) == n_bn, "a Keras BatchNorm layer is unmapped"
    for layer, path in pairs:
        keras_shape = tuple(d for d in layer.output.shape[1:])
        our_shape = ours[path]
        if len(keras_shape) == 3 and keras_shape[:2] == (1, 1) and len(our_shape) == 1:
            keras_shape = keras_shape[2:]  # Keras's post-pool 1x1 conv == our Dense
        assert our_shape == keras_shape, f"{layer.name} -> {path}: ours {our_shape}, keras {keras_shape}"
