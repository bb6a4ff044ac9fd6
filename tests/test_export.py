"""Export to TFLite and ONNX (mobilenet_jax.export): every family's float file computes the model's
function (logits within 1e-4 of `model.apply`) with builtin ops only, one DEPTHWISE_CONV_2D per
depthwise layer and BatchNorm folded away; int8 of a trained network agrees with float; bad
requests are one error line with nothing left behind. Small widths and 64x64 inputs; each
network is converted once per session."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mobilenet_jax import export as ex
from mobilenet_jax.sizes import is_depthwise, iter_equations

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
#: Segmentation networks: the same parity and depthwise form; their bilinear upsampling adds
#: gathers (GATHER_ND, with TRANSPOSE for the width axis) and its weighted sums' MUL/ADD.
SEGMENTATION_CASES = [
    ("lraspp_v3_small", "lraspp", dict(backbone="mobilenet_v3_small", width=0.35, num_classes=5)),
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
            _, name, fields = next(c for c in CASES + SEGMENTATION_CASES if c[0] == case_id)
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


@pytest.mark.parametrize("case_id", [c[0] for c in SEGMENTATION_CASES])
def test_float_tflite_of_a_segmentation_network_computes_its_per_pixel_logits(case_id, float_exports):
    exportable, path, ops = float_exports(case_id)
    images = ex.representative_images(exportable.config, 1, SIZE) * 1.0
    reference = ex.jax_outputs(exportable, images)
    outputs = ex.run_tflite(ex.tflite_interpreter(path), images)
    (key,) = reference
    assert reference[key].shape == (1, SIZE, SIZE, 5) == outputs[key].shape
    np.testing.assert_allclose(outputs[key], reference[key], atol=1e-4, rtol=0)
    assert set(ops) <= ALLOWED_OPS | {"GATHER_ND", "TRANSPOSE", "LOGISTIC"}, ops
    assert ops["DEPTHWISE_CONV_2D"] == structure(exportable.model, exportable.variables)["depthwise"] > 0


@pytest.mark.parametrize("case_id", ["v2", "ssdlite_v2"])
def test_onnx_of_the_float_tflite_graph_computes_the_model(case_id, float_exports, tmp_path):
    """`--formats onnx`: tf2onnx's conversion of the float TFLite graph, run by onnxruntime on
    one thread, gives the model's named outputs within 1e-4 of `model.apply` (SSDLite's two
    heads told apart by the signature the file's metadata keeps), with every TFLite
    convolution an ONNX Conv (the depthwise ones grouped)."""
    exportable, path, ops = float_exports(case_id)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(ex.tflite_to_onnx(path.read_bytes()))
    images = ex.representative_images(exportable.config, 1, SIZE) * 1.0
    reference = ex.jax_outputs(exportable, images)
    outputs = ex.load_onnx(onnx_path)(images)
    assert set(outputs) == set(reference)
    for key in reference:
        assert outputs[key].shape == reference[key].shape
        np.testing.assert_allclose(outputs[key], reference[key], atol=1e-4, rtol=0)
    assert ex.onnx_ops(onnx_path)["Conv"] == ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"]


def test_depthwise_count_is_the_models_own(float_exports):
    """The structure counter is not trivially true: V2 0.35 has 17 depthwise layers and 10
    residual additions (V2 Table 2), V3-Small 11 depthwise layers and 9 squeeze-excites (V3
    Table 2) and 7 residuals: 6 at width 1, and at 0.35 the 40 -> 48 block's channels both
    round to 16, so it gains a shortcut."""
    v2, v3 = (structure(e.model, e.variables) for e in (float_exports("v2")[0], float_exports("v3_small")[0]))
    assert (v2["depthwise"], v2["residual"], v2["squeeze_excite"]) == (17, 10, 0)
    assert (v3["depthwise"], v3["residual"], v3["squeeze_excite"]) == (11, 7, 9)


# --------------------------------------------------------------------------------------------
# A trained workdir through the command: int8 agrees with float
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_export(tmp_path_factory):
    """The tiny config (V2 0.35, 32x32, the embedded shapes) trained briefly (60 steps, no
    EMA: the exported weights are the trained ones), exported by the command from its
    workdir as float32 and int8."""
    from mobilenet_jax import cli
    from tests._train_helpers import run_cli

    workdir = tmp_path_factory.mktemp("trained")
    run_cli(str(workdir / "run"), "--config.num_train_steps=60", "--config.eval_every_steps=60",
            "--config.checkpoint_every_steps=60", "--config.ema_decay=0.0", "--config.embedded_num_train=960",
            devices=1)
    out = workdir / "export"
    status = cli.run(ex.main, ["--workdir", str(workdir / "run"), "--out", str(out), "--formats", "float32", "int8",
                               "onnx_int8", "--representative-count", "100", "--score-split", "eval"])
    assert status == 0
    return out


def test_int8_export_of_a_trained_network_agrees_with_float(trained_export):
    """Full integer quantization (V3 Table 4's setting): builtin int8 ops, DEPTHWISE_CONV_2D
    kept, under half the float file's size; on the embedded eval images the int8 top-1 is the
    float top-1 wherever the float network is decided (top-1 logit ahead by > 0.5) on >= 97%
    of them, and on >= 75% of all. A briefly trained network is undecided on many images
    (at 48% accuracy after 500 steps, int8 agreed with float on 87% of all images; the
    97%-on-all figure needs the fully trained network, see README)."""
    from mobilenet_jax.data import embedded

    manifest = json.loads((trained_export / "export.json").read_text())
    assert set(manifest["files"]) == {"float32", "int8", "onnx_int8"} and manifest["input_shape"] == [1, 32, 32, 3]
    assert manifest["representative_images"] == 100
    ops = manifest["files"]["int8"]["ops"]
    assert ops["DEPTHWISE_CONV_2D"] == 17 and set(ops) <= ALLOWED_OPS | {"QUANTIZE", "DEQUANTIZE"}
    assert os.path.getsize(trained_export / "model_int8.tflite") < 0.5 * os.path.getsize(
        trained_export / "model_float32.tflite")
    images, labels = embedded.make_split("eval", 200, 32, seed=0)
    floats, ints = (ex.tflite_interpreter(trained_export / f"model_{f}.tflite") for f in ("float32", "int8"))
    logits_float = np.stack([ex.run_tflite(floats, x[None])["logits"][0] for x in images])
    top_int8 = np.array([ex.run_tflite(ints, x[None])["logits"].argmax() for x in images])
    top2 = np.sort(logits_float, -1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.5
    agree = logits_float.argmax(-1) == top_int8
    assert decided.sum() >= 20, decided.sum()
    assert agree[decided].mean() >= 0.97, (agree[decided].mean(), decided.sum())
    assert agree.mean() >= 0.75, agree.mean()


def test_score_split_measures_the_files_top1_where_the_trainer_measured_the_model(trained_export):
    """--score-split eval: the JAX model's top-1 over the 40 eval images is the trainer's own
    final eval accuracy (the same images, weights and mask), the float file agrees with it on
    every image, and each file's accuracy is its agreement's consequence (within 1 - agreement)."""
    from mobilenet_jax.train import read_metrics

    scored = json.loads((trained_export / "export.json").read_text())["scored"]
    trainer = [r for r in read_metrics(str(trained_export.parent / "run"), "eval") if r["step"] == 60]
    assert scored["split"] == "eval" and scored["images"] == 40
    assert scored["jax_accuracy"] == pytest.approx(trainer[-1]["accuracy"], abs=1e-9)
    assert scored["files"]["float32"]["top1_agreement"] == 1.0
    assert scored["files"]["float32"]["accuracy"] == scored["jax_accuracy"]
    int8 = scored["files"]["int8"]
    assert abs(int8["accuracy"] - scored["jax_accuracy"]) <= 1 - int8["top1_agreement"] + 1e-9
    assert set(scored["files"]) == {"float32", "int8", "onnx_int8"}


def test_onnx_int8_runs_the_int8_tflite_graph(trained_export):
    """`--formats onnx_int8`: the full-integer TFLite graph as ONNX QuantizeLinear /
    DequantizeLinear pairs around every convolution, int8 in and out with the TFLite file's
    scales. onnxruntime's int8 arithmetic is not LiteRT's: on the images where the float
    network is decided (top-1 logit ahead by > 0.5) its top-1 is float's on >= 85% (measured
    91%, LiteRT's int8 100%); README gives the plateaued Xception's numbers."""
    from mobilenet_jax.data import embedded

    ops = json.loads((trained_export / "export.json").read_text())["files"]["onnx_int8"]["ops"]
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["Conv"] == 35 + 17
    images, _ = embedded.make_split("eval", 200, 32, seed=0)
    floats = ex.tflite_interpreter(trained_export / "model_float32.tflite")
    onnx = ex.load_onnx(trained_export / "model_int8.onnx")
    logits_float = np.stack([ex.run_tflite(floats, x[None])["logits"][0] for x in images])
    top_onnx = np.array([onnx(x[None])["logits"].argmax() for x in images])
    top2 = np.sort(logits_float, -1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.5
    agree = logits_float.argmax(-1) == top_onnx
    assert decided.sum() >= 20 and agree[decided].mean() >= 0.85, (agree[decided].mean(), decided.sum())


# --------------------------------------------------------------------------------------------
# Bad requests: one error line, nothing written
# --------------------------------------------------------------------------------------------


def _run(argv, capsys):
    from mobilenet_jax import cli

    status = cli.run(ex.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    return status, err


@pytest.mark.parametrize("extra,message", [
    (["--model", "mobilenet_v5"], "unknown model"),
    (["--model", "mobilenet_v2", "--formats", "coreml"], "unknown format"),
    (["--model", "mobilenet_v2", "--batch", "0"], "--batch must be >= 1"),
    (["--model", "mobilenet_v2", "--image-size", "16"], "at least 32x32"),
    (["--model", "ssdlite", "--image-size", "48"], "at least 64x64"),
    (["--model", "mobilenet_v2", "--dtype", "bfloat16"], "float32 only"),
])
def test_bad_requests_are_one_error_line_and_write_nothing(extra, message, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = _run([*extra, "--out", str(out)], capsys)
    assert status != 0 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_a_workdir_without_checkpoint_or_an_output_under_a_file_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, err = _run(["--workdir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")], capsys)
    assert status == 1 and len(err) == 1 and "no config.json" in err[0]
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model": "mobilenet_v2", "dataset": "embedded"}))
    status, err = _run(["--workdir", str(tmp_path / "empty"), "--out", str(tmp_path / "out")], capsys)
    assert status == 1 and len(err) == 1 and "no checkpoint" in err[0], err
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("x")
    status, err = _run(["--model", "mobilenet_v2", "--out", str(tmp_path / "file" / "sub")], capsys)
    assert status == 1 and len(err) == 1 and "is a file" in err[0]
    assert (tmp_path / "file").read_text() == "x"

