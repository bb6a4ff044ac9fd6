"""SSDLite-MobileNetV2 at 320x320 (V2 Table 6: 4.3M parameters, 0.8B multiply-adds), counted
from the model and from a formula built on Keras's MobileNetV2 counts (docs/papers.md)."""
import pytest

from mobilenet_jax.models import create_model
from mobilenet_jax.sizes import model_size
from mobilenet_jax.summary import VARIANTS, measure

# keras.applications MobileNetV2 1.0-224: trainable parameters and multiply-adds.
KERAS_V2_PARAMS, KERAS_V2_MADDS = 3_504_872, 300_774_272
CLASSIFIER_PARAMS, CLASSIFIER_MADDS = 1280 * 1000 + 1000, 1280 * 1000


def ssdlite_v2_formula(num_classes: int, res: int = 320) -> tuple[int, int]:
    """Parameters and multiply-adds of SSDLite on MobileNetV2-1.0, by hand."""
    # Backbone: the classifier network without its classifier; at 320 every map is exactly
    # (320/224)^2 larger (160/80/40/20/10 against 112/56/28/14/7).
    params = KERAS_V2_PARAMS - CLASSIFIER_PARAMS
    madds = (KERAS_V2_MADDS - CLASSIFIER_MADDS) * res * res // (224 * 224)
    sizes = [res // 16, res // 32]
    channels = [576, 1280]
    c, hw = 1280, res // 32
    for d in (512, 256, 256, 128):  # extra layers: 1x1 to d/2, 3x3 dw s2, 1x1 to d (+BN each)
        h, out = d // 2, -(-hw // 2)
        params += c * h + 2 * h + 9 * h + 2 * h + h * d + 2 * d
        madds += hw * hw * c * h + out * out * (9 * h + h * d)
        c, hw = d, out
        sizes.append(out)
        channels.append(d)
    for i, (ch, s) in enumerate(zip(channels, sizes)):  # predictors: 3x3 dw + BN, 1x1 + bias
        k = 3 if i == 0 else 6
        for size in (4, 1 + num_classes):
            params += 9 * ch + 2 * ch + ch * k * size + k * size
            madds += s * s * (9 * ch + ch * k * size)
    return params, madds


@pytest.mark.parametrize("num_classes", [80, 90])
def test_ssdlite_v2_320_size_equals_the_formula_and_the_paper(num_classes):
    model = create_model("ssdlite", backbone="mobilenet_v2", num_classes=num_classes)
    size = model_size(model, 320)
    assert (size.params, size.madds) == ssdlite_v2_formula(num_classes)
    bn_scale_offset = size.batch_stats  # mean + variance per BN channel = scale + offset
    if num_classes == 80:  # the V2 paper's setting: 4.3M without BN scale/offset, 0.8B
        assert round((size.params - bn_scale_offset) / 1e5) == 43
        assert abs(size.madds - 0.8e9) / 0.8e9 < 0.02


def test_summary_lists_the_detectors():
    rows = [v for v in VARIANTS if v.model == "ssdlite"]
    assert {v.source for v in rows} == {"V2 Table 6", "V3 Table 6"}
    small = next(v for v in rows if v.overrides.get("reduced_tail") and "small" in v.overrides["backbone"])
    r = measure(small)
    # V3 Table 6, V3-Small halved tail: 1.77M parameters (without BN scale/offset), 0.16B.
    assert abs(r["params"] - r["batch_stats"] - r["paper_params"]) / r["paper_params"] < 0.01
    assert abs(r["madds"] - r["paper_madds"]) / r["paper_madds"] < 0.02
