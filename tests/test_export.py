"""Export to TFLite (mobilenet_jax.export): every family's float file computes the model's
function (logits within 1e-4 of `model.apply`) with builtin ops only, one DEPTHWISE_CONV_2D per
depthwise layer and BatchNorm folded away; int8 of a trained network agrees with float; bad
requests are one error line with nothing left behind. Small widths and 64x64 inputs; each
network is converted once per session."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax import export as ex
from mobilenet_jax.profile import is_depthwise, iter_equations

SIZE = 64
#: (id, registry name, fields): every family the papers time, and SSDLite's heads.
CASES = [
    ("v1", "mobilenet_v1", dict(width=0.25, num_classes=10)),
    ("v2", "mobilenet_v2", dict(width=0.35, num_classes=10)),
    ("v3_large", "mobilenet_v3_large", dict(width=0.35, num_classes=10)),
    ("v3_small", "mobilenet_v3_small", dict(width=0.35, num_classes=10)),
    ("v3_small_minimalistic", "mobilenet_v3_small", dict(width=0.35, num_classes=10, minimalistic=True)),
    ("xception", "xception", dict(width=0.25, num_classes=10)),
    ("ssdlite_v2", "ssdlite", dict(backbone="mobilenet_v2", width=0.35, num_classes=5)),
]
#: What a folded, fused graph may contain: BatchNorm becomes conv weights and bias, ReLU/ReLU6
#: the convs' fused activation; ADD is a residual shortcut, MUL/SUM squeeze-excite's and the
#: global pool's, RESHAPE/CONCATENATION SSDLite's head layout.
ALLOWED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "SUM", "MEAN", "RESHAPE",
               "HARD_SWISH", "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RELU"}


def structure(model, variables) -> dict[str, int]:
    """Counted from the JAX model itself: depthwise layers (`layers.depthwise_conv2d` calls),
    BatchNorm layers, squeeze-excite modules, and residual additions (an `add` of two
    activation tensors of one shape, neither a broadcast)."""
    jaxpr = jax.make_jaxpr(lambda x: model.apply(variables, x, train=False))(jnp.zeros((1, SIZE, SIZE, 3)))
    depthwise = sum(is_depthwise(e) for e in iter_equations(jaxpr.jaxpr))
    broadcast = {v for e in jaxpr.jaxpr.eqns if e.primitive.name == "broadcast_in_dim" for v in e.outvars}
    residual = sum(
        1 for e in jaxpr.jaxpr.eqns
        if e.primitive.name == "add" and all(getattr(v.aval, "ndim", 0) == 4 for v in e.invars)
        and e.invars[0].aval.shape == e.invars[1].aval.shape and not (set(e.invars) & broadcast)
        and all(v.aval.shape[1] > 1 for v in e.invars))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(variables["params"])[0]]
    squeeze_excite = sum(p.endswith("['reduce']['kernel']") for p in paths)
    batch_norms = sum(jax.tree_util.keystr(p).endswith("['mean']")
                      for p, _ in jax.tree_util.tree_flatten_with_path(variables["batch_stats"])[0])
    return dict(depthwise=depthwise, residual=residual, squeeze_excite=squeeze_excite, batch_norms=batch_norms)


@pytest.fixture(scope="session")
def float_exports(tmp_path_factory):
    """{case id: (Exportable, .tflite path, op histogram)}: each network converted once."""
    cache: dict[str, tuple] = {}

    def get(case_id: str):
        if case_id not in cache:
            _, name, fields = next(c for c in CASES if c[0] == case_id)
            exportable = ex.fresh(name, image_size=SIZE, calibration_images=8, **fields)
            path = tmp_path_factory.mktemp(case_id) / "model.tflite"
            path.write_bytes(ex.convert_tflite(exportable, "float32"))
            cache[case_id] = (exportable, path, ex.op_histogram(path))
        return cache[case_id]

    return get


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_float_tflite_computes_the_model_with_folded_builtin_ops(case_id, float_exports):
    exportable, path, ops = float_exports(case_id)
    images = ex.representative_images(exportable.config, 1, SIZE) * 1.0
    reference = ex.jax_outputs(exportable, images)
    outputs = ex.run_tflite(ex.tflite_interpreter(path), images)
    assert set(outputs) == set(reference)
    for key in reference:
        assert outputs[key].shape == reference[key].shape
        np.testing.assert_allclose(outputs[key], reference[key], atol=1e-4, rtol=0)
    # Builtin ops only, and only those a folded graph has.
    assert set(ops) <= ALLOWED_OPS, ops
    counts = structure(exportable.model, exportable.variables)
    # One DEPTHWISE_CONV_2D per depthwise layer: the deployment form, not shifted MUL/ADDs.
    assert ops["DEPTHWISE_CONV_2D"] == counts["depthwise"] > 0
    # BatchNorm folded: no MUL/ADD per BN layer. What remains is each residual's ADD and
    # squeeze-excite's pool scale, 1/6 of the hard sigmoid, and gate multiply.
    assert ops.get("ADD", 0) == counts["residual"], (ops, counts)
    assert ops.get("MUL", 0) == 3 * counts["squeeze_excite"], (ops, counts)


def test_depthwise_count_is_the_models_own(float_exports):
    """The structure counter is not trivially true: V2 0.35 has 17 depthwise layers and 10
    residual additions (V2 Table 2), V3-Small 11 depthwise layers and 9 squeeze-excites (V3
    Table 2) and 7 residuals: 6 at width 1, and at 0.35 the 40 -> 48 block's channels both
    round to 16, so it gains a shortcut."""
    v2, v3 = (structure(e.model, e.variables) for e in (float_exports("v2")[0], float_exports("v3_small")[0]))
    assert (v2["depthwise"], v2["residual"], v2["squeeze_excite"]) == (17, 10, 0)
    assert (v3["depthwise"], v3["residual"], v3["squeeze_excite"]) == (11, 7, 9)
