"""The throughput benchmark runs on the CPU at small sizes (its GPU numbers live in
benchmarks/results/, never in a test)."""
from __future__ import annotations

import json

from benchmarks import profile, throughput


def test_throughput_benchmark_writes_a_result_with_compile_and_cache_figures(tmp_path, capsys):
    assert throughput.main([
        "--preset", "cpu", "--models", "mobilenet_v1", "--width", "0.25", "--batch-sizes", "8", "--resolution", "32",
        "--steps", "1", "--repeats", "1", "--dtype", "float32", "--torch", "off", "--out", str(tmp_path),
    ]) == 0
    (path,) = tmp_path.glob("throughput-*.json")
    result = json.loads(path.read_text())
    env = result["environment"]
    assert env["platform"] == "cpu" and env["local_devices"] == 8 and env["jax"]
    assert "--models mobilenet_v1" in env["command"]
    (row,) = result["rows"]
    assert row["model"] == "mobilenet_v1" and row["batch_size"] == 8 and row["resolution"] == 32
    assert row["width"] == 0.25
    assert row["train_images_per_s"] > 0 and row["eval_images_per_s"] > 0
    assert row["first_call_s"] > row["train_step_ms"] / 1e3  # the first call includes compilation
    assert row["compile_cold_s"] > 0 and row["compile_warm_s"] > 0
    assert row["cache_files"] > 0  # the first child filled the persistent compilation cache
    table = capsys.readouterr().out
    assert "mobilenet_v1" in table and "train img/s" in table


def test_xception_runs_at_its_papers_resolution_ratio():
    assert throughput.resolution_for("xception", 224) == 299
    assert throughput.resolution_for("mobilenet_v2", 224) == 224


HLO = """HloModule jit_step

%fused_reduce (p0: f32[2,4,4,3]) -> f32[3] {
  %p0 = f32[2,4,4,3]{3,2,1,0} parameter(0)
  %c = f32[] constant(0)
  ROOT %r = f32[3]{0} reduce(%p0, %c), dimensions={0,1,2}, to_apply=%add
}

%fused_copy (p0: f32[3,4]) -> f32[4,3] {
  %p0 = f32[3,4]{1,0} parameter(0)
  ROOT %t = f32[4,3]{1,0} transpose(%p0), dimensions={1,0}
}

ENTRY %main (x: f32[2,4,4,3], w: f32[1,1,3,3], y: f32[3,4]) -> f32[3] {
  %x = f32[2,4,4,3]{3,2,1,0} parameter(0)
  %w = f32[1,1,3,3]{3,2,1,0} parameter(1)
  %y = f32[3,4]{1,0} parameter(2)
  %conv.1 = f32[2,4,4,3]{3,2,1,0} convolution(%x, %w), window={size=1x1}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(step)/jvp(MobileNetV2)/blocks_3/expand/conv/conv_general_dilated"}
  %input_reduce_fusion.2 = f32[3]{0} fusion(%conv.1), kind=kInput, calls=%fused_reduce, metadata={op_name="jit(step)/transpose(jvp(MobileNetV2))/blocks_3/expand/bn/reduce_sum"}
  %copy_fusion = f32[4,3]{1,0} fusion(%y), kind=kLoop, calls=%fused_copy
  ROOT %add.7 = f32[3]{0} add(%input_reduce_fusion.2, %input_reduce_fusion.2), metadata={op_name="jit(step)/add"}
}
"""


def test_profile_parses_categories_and_layers_from_optimized_hlo():
    program = profile.parse_hlo(HLO)
    paths = {"blocks_3", "blocks_3/expand", "blocks_3/expand/conv", "blocks_3/expand/bn", "classifier"}
    # GPU kernels carry the HLO name with '.' as '_'
    reduce_fusion = program["input_reduce_fusion_2"]
    assert profile.category(reduce_fusion) == "reduction"
    assert profile.layer_of(reduce_fusion.op_name, paths) == "blocks_3/expand/bn"
    assert profile.category(program["conv_1"]) == "convolution/matmul"
    assert profile.layer_of(program["conv_1"].op_name, paths) == "blocks_3/expand/conv"
    assert profile.category(program["copy_fusion"]) == "copy"
    assert profile.category(program["add_7"]) == "elementwise"
    assert profile.layer_of(program["add_7"].op_name, paths) == ""
    assert profile.category(None, "sm90_xmma_wgrad_implicit_gemm_bf16") == "convolution/matmul"


def test_profile_attributes_a_cpu_train_step_to_kernel_categories_and_layers(tmp_path, capsys):
    assert profile.main([
        "--preset", "cpu", "--model", "mobilenet_v1", "--width", "0.25", "--batch-size", "8",
        "--resolution", "32", "--steps", "1", "--out", str(tmp_path),
    ]) == 0
    (path,) = tmp_path.glob("profile-cpu-mobilenet_v1-*.json")
    result = json.loads(path.read_text())
    assert result["environment"]["platform"] == "cpu"
    cats = result["by_category_ms_per_step"]
    assert abs(sum(cats.values()) - result["kernel_ms_per_step"]) < 1e-6 * max(result["kernel_ms_per_step"], 1)
    assert cats["convolution/matmul"] > 0 and cats["reduction"] > 0 and cats["elementwise"] > 0
    assert result["kernels_matched_to_hlo"] > 0.9  # every trace event found its HLO instruction
    layers = {k["layer"] for k in result["top_kernels"]} - {""}
    assert layers and all(l.split("/")[0] in {"stem", "classifier"} or l.startswith("blocks_") for l in layers)
    assert any(b.startswith("blocks_") for b in result["by_block_ms_per_step"])
    out = capsys.readouterr().out
    assert "convolution/matmul" in out and "layer" in out


def test_profile_lowered_for_counts_the_forms_each_backend_gets():
    """The GPU lowering has grouped depthwise convolutions and fewer passes over activations
    (one-pass statistics, fused BatchNorm backward) than the CPU lowering of the same gradient."""
    counts = {platform: profile.lowered_passes("mobilenet_v2", platform, batch_size=2, resolution=32,
                                               dtype="float32", width=0.35)
              for platform in ("cpu", "cuda")}
    assert counts["cpu"]["grouped_convolutions"] == 0
    assert counts["cuda"]["grouped_convolutions"] >= 17  # one per inverted residual, forward at least
    assert 0 < counts["cuda"]["distinct_reduced_tensors"] < counts["cpu"]["distinct_reduced_tensors"]
