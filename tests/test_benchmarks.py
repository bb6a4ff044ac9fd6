"""The throughput benchmark runs on the CPU at small sizes (its GPU numbers live in
benchmarks/results/, never in a test)."""
from __future__ import annotations

import json

from benchmarks import throughput


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
