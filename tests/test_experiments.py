"""Tests of experiments/: the MobileNetV2 Fig. 1 numbers, and the sweep framework with a fake trainer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import common, relu_manifold, report

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- MobileNetV2 Fig. 1 (Sec. 3.2)


@pytest.fixture(scope="module")
def manifold():
    x = relu_manifold.spiral(300)
    dims = [2, 3, 5, 15, 30]
    summaries, _ = relu_manifold.sweep(x, dims, num_t=60, seed=0)
    return {(s.activation, s.n): s.stats for s in summaries}


def test_relu_reconstruction_error_falls_with_n(manifold):
    """Over 60 random T: ReLU loses less of the spiral as n grows (the paper's argument for n = 15..30)."""
    dec = [manifold[("relu", n)]["decoder_error"]["mean"] for n in (2, 3, 5, 15, 30)]
    assert all(b < a for a, b in zip(dec, dec[1:])), dec
    assert dec[0] > 0.4 and dec[-1] < 0.01, dec
    pinv = [manifold[("relu", n)]["pinv_error"]["mean"] for n in (2, 5, 30)]
    assert pinv[0] > pinv[1] > pinv[2], pinv
    # ... but T⁺ alone never inverts ReLU: T⁺ ReLU(Tx) → x/2, so its error floors near 0.5.
    assert 0.4 < manifold[("relu", 30)]["pinv_error"]["mean"] < 0.65


def test_linear_control_reconstructs_exactly(manifold):
    for n in (2, 3, 5, 15, 30):
        for metric in ("pinv_error", "scaled_error", "decoder_error", "collapsed"):
            assert manifold[("linear", n)][metric]["p90"] < 1e-9, (n, metric)
    t = relu_manifold.random_embeddings(np.random.default_rng(3), 1, 7)[0]
    x = relu_manifold.spiral(50)
    np.testing.assert_allclose(relu_manifold.project_back(x, t, "linear"), x, atol=1e-12)


def test_collapse_is_large_at_n_2_3_and_matches_theory(manifold):
    """Collapsed fraction ≈ (n+1)/2^n for ReLU: 75% at n=2, 50% at n=3, ~0 at n ≥ 15."""
    for n, lo in ((2, 0.6), (3, 0.4)):
        assert manifold[("relu", n)]["collapsed"]["mean"] > lo
    for n in (2, 3, 5):
        assert abs(manifold[("relu", n)]["collapsed"]["mean"] - relu_manifold.expected_relu_collapse(n)) < 0.06, n
    assert manifold[("relu", 30)]["collapsed"]["mean"] < 1e-3
    # rank 0 (every unit off) at n=2 is the quadrant opposite both rows: about a quarter of points
    assert 0.1 < manifold[("relu", 2)]["dead"]["mean"] < 0.4


def test_relu6_clips_only_above_six():
    x = relu_manifold.spiral(200, radius=40.0)  # far beyond the ceiling: ReLU6 collapses more than ReLU
    t = relu_manifold.random_embeddings(np.random.default_rng(0), 20, 15)
    r = relu_manifold.manifold_metrics(x, t, "relu")["collapsed"].mean()
    r6 = relu_manifold.manifold_metrics(x, t, "relu6")["collapsed"].mean()
    assert r6 > r + 0.05, (r, r6)


def test_lstsq_min_norm_matches_pinv():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((80, 6)), 0.0)
    a[:, 2] = 0.0  # a dead unit: rank deficient
    b = rng.standard_normal((80, 2))
    np.testing.assert_allclose(relu_manifold.lstsq_min_norm(a, b), np.linalg.pinv(a) @ b, atol=1e-8)


def test_manifold_cli_writes_figures_numbers_and_report(tmp_path):
    """The command end to end (in a subprocess: one BLAS thread, as users run it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.relu_manifold", "--out", str(tmp_path), "--num-T", "8", "--dims", "2", "4",
         "--points", "200"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "relu_manifold"
    for name in ("figure1_relu.png", "figure1_relu6.png", "metrics_vs_n.png", "summary.csv", "per_T.csv", "report.md"):
        assert (out / name).stat().st_size > 0, name
    rows = common.read_csv(out / "summary.csv")
    assert {(r["activation"], int(r["n"])) for r in rows} == {(a, n) for a in relu_manifold.ACTIVATIONS for n in (2, 3, 4, 5, 15, 30)}
    text = (out / "report.md").read_text()
    assert "The paper's claim" in text and "figure1_relu.png" in text
    result = json.loads((out / "results.json").read_text())
    assert len(result["checks"]) == 3 and all(isinstance(c["supported"], bool) for c in result["checks"])


# ---------------------------------------------------------------- sweep framework


def _fake_run_fn(calls: list):
    """A stand-in trainer: accuracy rises to a plateau set by config['quality'] plus seed noise."""

    def run_fn(config, workdir: Path) -> dict:
        calls.append((config["quality"], config["seed"]))
        rng = np.random.default_rng(config["seed"])
        with (workdir / "metrics.jsonl").open("w") as f:
            for step in range(10, 51, 10):
                f.write(json.dumps({"step": step, "split": "train", "loss": 1.0 / step}) + "\n")
                acc = config["quality"] * (1 - np.exp(-step / 15)) + 0.002 * rng.standard_normal()
                f.write(json.dumps({"step": step, "split": "eval", "accuracy": acc, "loss": 1 - acc}) + "\n")
        return {"eval_accuracy": acc, "step": 50}

    return run_fn


def test_sweep_runs_each_config_and_resumes(tmp_path):
    specs = common.with_seeds({"good": {"quality": 0.9}, "bad": {"quality": 0.6}}, seeds=[0, 1, 2])
    # seed-major: a sweep stopped early still has every variant at its first seeds, paired
    assert [s.run_id for s in specs] == ["good-s0", "bad-s0", "good-s1", "bad-s1", "good-s2", "bad-s2"]
    calls: list = []
    first = common.run_sweep(specs[:4], _fake_run_fn(calls), tmp_path, log=lambda _: None)  # "interrupted" after 4
    assert len(calls) == 4 and not any(r.resumed for r in first)
    assert (tmp_path / "runs" / "good-s0" / "final.json").exists()
    everything = common.run_sweep(specs, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    assert len(calls) == 6, "finished runs must be skipped"
    assert calls[4:] == [(0.9, 2), (0.6, 2)]
    assert [r.resumed for r in everything] == [True] * 4 + [False] * 2
    np.testing.assert_allclose(everything[0].curve.values, first[0].curve.values)  # read back identically
    common.run_sweep(specs[:1], _fake_run_fn(calls), tmp_path, rerun=True, log=lambda _: None)
    assert len(calls) == 7


def test_finished_run_of_another_config_is_refused_not_reused(tmp_path):
    calls: list = []
    common.run_sweep(common.with_seeds({"a": {"quality": 0.8, "lr": 0.02}}, [0]), _fake_run_fn(calls), tmp_path,
                     log=lambda _: None)
    changed = common.with_seeds({"a": {"quality": 0.8, "lr": 0.05}}, [0])
    with pytest.raises(ValueError, match=r"lr=0.02, this sweep asks for 0.05: pass --rerun"):
        common.run_sweep(changed, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    common.run_sweep(changed, _fake_run_fn(calls), tmp_path, rerun=True, log=lambda _: None)
    assert len(calls) == 2


def test_interrupted_run_without_final_json_is_run_again(tmp_path):
    calls: list = []
    specs = common.with_seeds({"a": {"quality": 0.8}}, seeds=[0])
    workdir = tmp_path / "runs" / "a-s0"
    workdir.mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text('{"step": 10, "split": "eval", "accuracy": 0.1}\n')  # crashed mid-run
    common.run_sweep(specs, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    assert len(calls) == 1


def test_aggregate_mean_spread_and_comparison(tmp_path):
    specs = common.with_seeds({"good": {"quality": 0.9}, "bad": {"quality": 0.6}}, seeds=[0, 1, 2])
    results = common.run_sweep(specs, _fake_run_fn([]), tmp_path, log=lambda _: None)
    stats = common.aggregate(results)
    assert list(stats) == ["good", "bad"]
    good, bad = stats["good"], stats["bad"]
    assert good.steps.tolist() == [10, 20, 30, 40, 50] and good.n == 3
    finals = [r.curve.final for r in results if r.group == "good"]
    assert good.final_mean == pytest.approx(np.mean(finals)) and good.final_std == pytest.approx(np.std(finals, ddof=1))
    assert np.all(good.lo <= good.mean) and np.all(good.mean <= good.hi) and np.all(good.hi - good.lo > 0)
    assert common.decide(stats, common.Claim("good", "bad")).outcome == "agrees"
    assert common.decide(stats, common.Claim("good", "good")).outcome == "inconclusive"
    assert [r.run_id for r in common.load_runs(tmp_path)] == sorted(s.run_id for s in specs)  # rebuilt from disk
    rows = common.summary_rows(stats)
    assert rows[0]["group"] == "good" and rows[0]["eval_accuracy_mean"] == pytest.approx(good.final_mean)
    assert len(common.curves_rows(results)) == 6 * 5


def test_aggregate_uses_steps_common_to_all_seeds():
    c1 = common.Curve(np.array([10, 20, 30]), np.array([0.1, 0.2, 0.3]))
    c2 = common.Curve(np.array([10, 20]), np.array([0.3, 0.4]))
    runs = [common.RunResult(f"a-s{i}", "a", i, {}, c, 0.0, False) for i, c in enumerate((c1, c2))]
    s = common.aggregate(runs)["a"]
    assert s.steps.tolist() == [10, 20]
    np.testing.assert_allclose(s.mean, [0.2, 0.3])
    np.testing.assert_allclose(s.finals, [0.2, 0.4])


def test_read_metrics_jsonl_formats_and_errors(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 5, "split": "train", "loss": 2.0, "accuracy": 0.99}\n'
        '{"step": 10, "split": "eval", "accuracy": 0.5}\n'
        '{"step": 20, "eval_accuracy": 0.6}\n'
        '{"step": 10, "split": "eval", "accuracy": 0.55}\n'  # resumed: last value wins
    )
    curve = common.read_metrics_jsonl(path)
    assert curve.steps.tolist() == [10, 20] and curve.values.tolist() == [0.55, 0.6]
    assert common.read_metrics_jsonl(path, "train_loss").values.tolist() == [2.0]
    path.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        common.read_metrics_jsonl(path)


def test_sweep_rejects_bad_input(tmp_path):
    specs = common.with_seeds({"a": {"quality": 0.5}}, seeds=[0])
    with pytest.raises(ValueError, match="duplicate"):
        common.run_sweep(specs + specs, _fake_run_fn([]), tmp_path, log=lambda _: None)
    with pytest.raises(ValueError, match="run id"):
        common.run_sweep([common.RunSpec("../x", "a", 0, {})], _fake_run_fn([]), tmp_path, log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        common.run_sweep(specs, lambda c, w: {"eval_accuracy": 1.0}, tmp_path / "other", log=lambda _: None)
    with pytest.raises(TypeError, match="dict"):
        common.run_sweep(specs, lambda c, w: 0.5, tmp_path / "third", log=lambda _: None)


def test_plots_and_report_gathering(tmp_path):
    results = common.run_sweep(
        common.with_seeds({"good": {"quality": 0.9}, "bad": {"quality": 0.6}}, seeds=[0, 1]),
        _fake_run_fn([]), tmp_path / "fake", log=lambda _: None)
    stats = common.aggregate(results)
    exp = common.experiment_dir("fake", tmp_path)
    common.plot_curves(stats, exp / "curves.png", title="fake")
    common.plot_tradeoff([common.TradeoffPoint("a", 5e7, 0.6, 0.01, "w=0.5"), common.TradeoffPoint("b", 2e8, 0.7, 0.01, "w=0.5")],
                         exp / "tradeoff.png", title="fake")
    common.plot_bars(["good", "bad"], [0.9, 0.6], [0.01, 0.02], exp / "bars.png", title="fake")
    for name in ("curves.png", "tradeoff.png", "bars.png"):
        assert (exp / name).read_bytes()[:4] == b"\x89PNG"
    common.write_report(exp, title="Fake experiment", paper_claim="good > bad.", outcome="**Supported.** yes.",
                        command="python -m experiments.fake", figures=[("curves", "curves.png")],
                        sections=[("Table", common.markdown_table(["a", "b"], [[1, 2]]))])
    with pytest.raises(FileNotFoundError):
        common.write_report(exp, title="x", paper_claim="", outcome="", command="", figures=[("c", "missing.png")])
    page = report.gather(tmp_path)
    assert "](fake/curves.png)" in page and "## Fake experiment" in page and "| Supported. |" in page
    with pytest.raises(ValueError, match="cells"):
        common.markdown_table(["a"], [[1, 2]])
