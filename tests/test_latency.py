"""The latency side of the papers: V3 Sec. 5.1's last-stage and stem switches (their MAdds
beside the paper's), and the latency benchmark's timing and table (benchmarks.latency)."""
from __future__ import annotations

import pytest

from mobilenet_jax import create_model
from mobilenet_jax.models.registry import ModelConfigError
from mobilenet_jax.sizes import model_size


def test_v3_efficient_last_stage_and_small_stem_save_the_papers_madds():
    """V3 Sec. 5.1: the efficient last stage saves "30M MAdds" (ours 34.3M: the original stage
    of Fig. 5 at 7x7), the 16-filter h-swish stem "10M MAdds" (ours 10.4M)."""
    published = model_size(create_model("mobilenet_v3_large"), 224)
    original = model_size(create_model("mobilenet_v3_large", last_stage="original"), 224)
    relu32 = model_size(create_model("mobilenet_v3_large", stem="relu32"), 224)
    assert 30e6 <= original.madds - published.madds <= 36e6
    assert 9.5e6 <= relu32.madds - published.madds <= 11e6
    with pytest.raises(ModelConfigError, match="last_stage"):
        create_model("mobilenet_v3_large", last_stage="v2")
    with pytest.raises(ModelConfigError, match="stem"):
        create_model("mobilenet_v3_small", stem="relu16")


def test_latency_rows_time_each_network_and_table5s_separate_hswish_is_unfused():
    """benchmarks.latency on two small networks: V3-Small and the same network with h-swish
    built from separate ops (V3 Table 5's no-opt column): positive single-thread timings,
    ratios to the reference, and HARD_SWISH ops only where the optimized h-swish is used, in
    the TFLite file (LiteRT) and in its ONNX conversion (onnxruntime)."""
    from benchmarks.latency import Timed, add_ratios, format_table, measure

    common = dict(width=0.35, num_classes=10)
    timed = [Timed("t", "V3-Small", "mobilenet_v3_small", common, 64, 15.8, reference=True),
             Timed("t", "separate ops", "mobilenet_v3_small", common, 64, 20.0, separate_hswish=True)]
    rows = [measure(t, image_size=None, formats=("float32", "onnx"), runs=3, warmup=1, sessions=2,
                    representative_count=1) for t in timed]
    add_ratios(rows, ("float32", "onnx"))
    fused, separate = (r["float32"] for r in rows)
    assert fused["ratio"] == 1.0 and separate["ratio"] > 0 and rows[1]["paper_ratio"] == 20.0 / 15.8
    assert len(fused["session_medians_ms"]) == 2 and fused["runs"] == 6 and 0 < fused["median_ms"] <= fused["p90_ms"]
    assert fused["ops"]["HARD_SWISH"] == 19 and "HARD_SWISH" not in separate["ops"]
    assert separate["ops"]["MUL"] > fused["ops"]["MUL"] + 19
    assert rows[0]["madds"] == rows[1]["madds"]  # the same network, the same function
    assert "separate ops" in format_table(rows, ("float32", "onnx"))
    # The same file through onnxruntime, timed the same way, HardSwish one op. The separate-ops
    # h-swish clamp is TFLite's RELU_0_TO_1, which tf2onnx cannot convert: a gap, named.
    onnx_fused, onnx_separate = (r["onnx"] for r in rows)
    assert onnx_fused["ratio"] == 1.0 and 0 < onnx_fused["median_ms"] <= onnx_fused["p90_ms"]
    assert onnx_fused["ops"]["HardSwish"] == 19
    assert "RELU_0_TO_1" in onnx_separate["unavailable"] and "ratio" not in onnx_separate
