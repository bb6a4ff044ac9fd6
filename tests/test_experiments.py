"""Tests of experiments/: the MobileNetV2 Fig. 1 numbers, and the sweep framework with a fake trainer."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments import plots, relu_manifold, report, reports, runs, stats
from mobilenet_jax import cli
from mobilenet_jax.errors import Preempted

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
    rows = runs.read_csv(out / "summary.csv")
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
    specs = runs.with_seeds({"good": {"quality": 0.9}, "bad": {"quality": 0.6}}, seeds=[0, 1, 2])
    # seed-major: a sweep stopped early still has every variant at its first seeds, paired
    assert [s.run_id for s in specs] == ["good-s0", "bad-s0", "good-s1", "bad-s1", "good-s2", "bad-s2"]
    calls: list = []
    first = runs.run_sweep(specs[:4], _fake_run_fn(calls), tmp_path, log=lambda _: None)  # "interrupted" after 4
    assert len(calls) == 4 and not any(r.resumed for r in first)
    assert (tmp_path / "runs" / "good-s0" / "final.json").exists()
    everything = runs.run_sweep(specs, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    assert len(calls) == 6, "finished runs must be skipped"
    assert calls[4:] == [(0.9, 2), (0.6, 2)]
    assert [r.resumed for r in everything] == [True] * 4 + [False] * 2
    np.testing.assert_allclose(everything[0].curve.values, first[0].curve.values)  # read back identically
    runs.run_sweep(specs[:1], _fake_run_fn(calls), tmp_path, rerun=True, log=lambda _: None)
    assert len(calls) == 7


def test_finished_run_of_another_config_is_refused_not_reused(tmp_path):
    calls: list = []
    runs.run_sweep(runs.with_seeds({"a": {"quality": 0.8, "lr": 0.02}}, [0]), _fake_run_fn(calls), tmp_path,
                     log=lambda _: None)
    changed = runs.with_seeds({"a": {"quality": 0.8, "lr": 0.05}}, [0])
    with pytest.raises(ValueError, match=r"lr=0.02, this sweep asks for 0.05: pass --rerun"):
        runs.run_sweep(changed, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    runs.run_sweep(changed, _fake_run_fn(calls), tmp_path, rerun=True, log=lambda _: None)
    assert len(calls) == 2


def test_interrupted_run_without_final_json_is_run_again(tmp_path):
    calls: list = []
    specs = runs.with_seeds({"a": {"quality": 0.8}}, seeds=[0])
    workdir = tmp_path / "runs" / "a-s0"
    workdir.mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text('{"step": 10, "split": "eval", "accuracy": 0.1}\n')  # crashed mid-run
    runs.run_sweep(specs, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    assert len(calls) == 1


def test_preempted_run_is_not_finished_and_stops_the_sweep(tmp_path):
    """A SIGTERM'd trainer returns at a checkpoint with preempted=True: that run has no final.json
    (the next sweep resumes it), the runs after it do not start, and the command exits 143."""
    calls: list = []
    fake, preempt = _fake_run_fn(calls), [True]

    def run_fn(config, workdir):
        if config["seed"] == 0:
            time.sleep(0.2)
        return {**fake(config, workdir), "preempted": preempt.pop() if preempt else False}

    specs = runs.with_seeds({"a": {"quality": 0.8}}, seeds=[0, 1])
    with pytest.raises(Preempted, match=r"run a-s0 was preempted \(SIGTERM\) at step 50"):
        runs.run_sweep(specs, run_fn, tmp_path, log=lambda _: None)
    assert len(calls) == 1 and not (tmp_path / "runs" / "a-s0" / "final.json").exists()
    assert runs.read_json(tmp_path / "runs" / "a-s0" / "wall_s.json")["wall_s"] >= 0.2
    resumed = runs.run_sweep(specs, run_fn, tmp_path, log=lambda _: None)
    assert len(calls) == 3 and [r.resumed for r in resumed] == [False, False]
    # the run's wall time counts its interrupted invocation too; the partial record is gone once it finished
    assert resumed[0].wall_s >= 0.4 > resumed[1].wall_s and not (tmp_path / "runs" / "a-s0" / "wall_s.json").exists()
    preempt.append(True)
    assert cli.run(lambda argv: runs.run_sweep(specs, run_fn, tmp_path / "b", log=lambda _: None), []) == 143


def test_two_sweeps_on_two_cores_split_the_runs_and_the_last_to_finish_has_them_all(tmp_path):
    """A run whose lock another process holds is left to it: this sweep trains the others and, with
    that run unfinished at its end, raises RunsElsewhere naming it; finished by its holder meanwhile,
    it is read back in its place (the last process to finish reports on every run)."""
    specs = runs.with_seeds({"a": {"quality": 0.8}}, seeds=[0, 1, 2])
    held_dir = tmp_path / "runs" / "a-s0"
    held_dir.mkdir(parents=True)
    held = runs.RunLock.acquire(held_dir)
    assert held is not None and runs.RunLock.acquire(held_dir) is None  # exclusive, also within a process
    calls: list = []
    with pytest.raises(runs.RunsElsewhere, match=r"1 run\(s\) still being trained by other processes \(a-s0\)"):
        runs.run_sweep(specs, _fake_run_fn(calls), tmp_path, log=lambda _: None)
    assert [seed for _, seed in calls] == [1, 2] and not (held_dir / "final.json").exists()

    other = tmp_path / "other"  # the holder's run, finished while this sweep trains a-s2
    runs.run_sweep(specs[:1], _fake_run_fn([]), other, log=lambda _: None)
    fake = _fake_run_fn(calls)

    def run_fn(config, workdir):
        (held_dir / "final.json").write_text((other / "runs" / "a-s0" / "final.json").read_text())
        return fake(config, workdir)

    (tmp_path / "runs" / "a-s2" / "final.json").unlink()
    results = runs.run_sweep(specs, run_fn, tmp_path, log=lambda _: None)
    assert [r.run_id for r in results] == ["a-s0", "a-s1", "a-s2"] and [r.resumed for r in results] == [True, True, False]
    assert len(calls) == 3
    held.release()
    assert runs.RunLock.acquire(held_dir) is not None


def test_a_run_lock_dies_with_its_process(tmp_path):
    """The kernel drops a killed process's flock: no stale lock blocks a resumed sweep."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from experiments.runs import RunLock; "
         "lock = RunLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert runs.RunLock.acquire(tmp_path) is None
        assert runs.RunLock.holder(tmp_path).startswith(f"pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()
    assert runs.RunLock.acquire(tmp_path) is not None


def test_aggregate_mean_spread_and_comparison(tmp_path):
    specs = runs.with_seeds({"good": {"quality": 0.9}, "bad": {"quality": 0.6}}, seeds=[0, 1, 2])
    results = runs.run_sweep(specs, _fake_run_fn([]), tmp_path, log=lambda _: None)
    groups = runs.aggregate(results)
    assert list(groups) == ["good", "bad"]
    good, bad = groups["good"], groups["bad"]
    assert good.steps.tolist() == [10, 20, 30, 40, 50] and good.n == 3 and good.seeds == (0, 1, 2)
    finals = [r.curve.final for r in results if r.group == "good"]  # no test_accuracy: the curve's last value
    assert good.final_mean == pytest.approx(np.mean(finals)) and good.final_std == pytest.approx(np.std(finals, ddof=1))
    assert np.all(good.lo <= good.mean) and np.all(good.mean <= good.hi) and np.all(good.hi - good.lo > 0)
    assert good.plateau_steps == (-1, -1, -1) and not good.all_plateaued
    claim = stats.Claim("good", "bad")
    assert stats.decide(good.by_seed(), bad.by_seed(), claim).outcome == "agrees"
    assert stats.decide(good.by_seed(), good.by_seed(), stats.Claim("good", "good")).outcome == "inconclusive"
    assert [r.run_id for r in runs.load_runs(tmp_path)] == sorted(s.run_id for s in specs)  # rebuilt from disk
    rows = reports.summary_rows(groups)
    assert rows[0]["group"] == "good" and rows[0]["eval_accuracy_mean"] == pytest.approx(good.final_mean)
    assert len(reports.curves_rows(results)) == 6 * 5


def _result(seed, steps, values, group="a", **summary):
    curve = runs.Curve(np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64))
    return runs.RunResult(f"{group}-s{seed}", group, seed, summary, curve, 0.0, False)


def test_aggregate_runs_that_stopped_at_different_steps():
    """Seed 0 stopped at its plateau after its evaluation at step 20, seed 1 ran its budget to 40: the
    mean and band hold a stopped run's last value, the speed is the mean over the steps both ran, the
    final value is the held-out one from the run's summary (the curve's last value without one)."""
    results = [
        _result(1, [10, 20, 30, 40], [0.3, 0.5, 0.6, 0.7], test_accuracy=0.65, plateau_step=-1),
        _result(0, [10, 20], [0.1, 0.2], test_accuracy=0.25, plateau_step=10),
        _result(2, [10, 20, 30], [0.2, 0.4, 0.5], group="b"),  # no summary: the curve's last value
        _result(3, [10, 20, 30], [0.3, 0.3, 0.3], group="b", plateau_step=10),
    ]
    groups = runs.aggregate(results)
    a, b = groups["a"], groups["b"]
    assert a.seeds == (0, 1)  # sorted by seed, not input order
    assert a.steps.tolist() == [10, 20, 30, 40]
    np.testing.assert_allclose(a.mean, [0.2, 0.35, 0.4, 0.45])  # seed 0 held at 0.2 from step 20 on
    np.testing.assert_allclose(a.lo, [0.1, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(a.hi, [0.3, 0.5, 0.6, 0.7])
    np.testing.assert_allclose(a.speeds, [0.15, 0.4])  # over steps 10-20, the steps both ran
    np.testing.assert_allclose(a.finals, [0.25, 0.65])  # summary test_accuracy, not the curves
    assert a.by_seed() == {0: 0.25, 1: 0.65} and a.by_seed("speed") == pytest.approx({0: 0.15, 1: 0.4})
    assert a.plateau_steps == (10, -1) and not a.all_plateaued
    np.testing.assert_allclose(b.finals, [0.5, 0.3])  # fallback: the last point of each curve
    assert b.plateau_steps == (-1, 10)
    np.testing.assert_allclose(runs.aggregate(results, final_key="missing")["a"].finals, [0.2, 0.7])
    assert list(runs.aggregate(results, ["b", "a"])) == ["b", "a"]
    with pytest.raises(ValueError, match="no runs"):
        runs.aggregate(results, ["a", "c"])
    plateaued = runs.aggregate([_result(0, [10, 20], [0.1, 0.2], plateau_step=10),
                                _result(1, [10, 20, 30], [0.1, 0.2, 0.2], plateau_step=10)])["a"]
    assert plateaued.all_plateaued
    with pytest.raises(ValueError, match="share no evaluation step"):
        runs.aggregate([_result(0, [30, 40], [0.1, 0.2]), _result(1, [10, 20], [0.1, 0.2])])


def test_read_curve_from_a_trainer_metrics_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 5, "split": "train", "loss": 2.0, "accuracy": 0.99}\n'
        '{"step": 10, "split": "eval", "accuracy": 0.5, "AP": 0.1}\n'
        '{"step": 20, "split": "eval", "accuracy": 0.6, "AP": 0.2}\n'
        '{"step": 20, "split": "stop", "plateau_step": 10}\n'
        '{"step": 10, "split": "eval", "accuracy": 0.55}\n'  # a step logged twice: the last value wins
        '{"step": 30, "split": "eval", "loss": 1.0}\n'  # no accuracy at this step
        '{"step": 20, "split": "test", "accuracy": 0.58}\n'
    )
    curve = runs.read_curve(tmp_path)
    assert curve.steps.tolist() == [10, 20] and curve.values.tolist() == [0.55, 0.6] and curve.final == 0.6
    assert curve.steps.dtype == np.int64 and curve.values.dtype == np.float64
    assert runs.read_curve(tmp_path, "train_loss").values.tolist() == [2.0]
    assert runs.read_curve(tmp_path, "eval_AP").values.tolist() == [0.1, 0.2]
    assert runs.read_curve(tmp_path, "test_accuracy").steps.tolist() == [20]
    assert runs.read_curve(tmp_path, "eval_loss").steps.tolist() == [30]
    empty = runs.read_curve(tmp_path / "nothing")  # no metrics.jsonl: an empty curve
    assert empty.steps.size == 0
    with pytest.raises(ValueError, match="empty curve"):
        empty.final
    with pytest.raises(ValueError, match="one shape"):
        runs.Curve(np.array([1, 2]), np.array([0.1]))


# ---------------------------------------------------------------- which finished runs are reused


def _trainer_like(**changes):
    """A config shaped like the trainer's: a few keys at their schema defaults, one not, one execution key."""
    config = {"quality": 0.8, "learning_rate": 0.02, "plateau_evals": 0, "num_devices": 1, "progress_bar": False,
              "model_kwargs": {"width": 0.5}}
    config.update(changes)
    return config


def test_config_identity_ignores_defaults_and_execution_keys_not_settings(tmp_path):
    from mobilenet_jax.train.config import default_config

    assert default_config().plateau_evals == 0 and default_config().learning_rate != 0.02  # the premise
    calls: list = []
    old = _trainer_like()
    del old["plateau_evals"]  # a run finished before the trainer had this key
    runs.run_sweep(runs.with_seeds({"a": old}, [0]), _fake_run_fn(calls), tmp_path, log=lambda _: None)
    final = runs.read_json(tmp_path / "runs" / "a-s0" / "final.json")
    assert "plateau_evals" not in final["config"] and len(calls) == 1

    def sweep(**changes):
        return runs.run_sweep(runs.with_seeds({"a": _trainer_like(**changes)}, [0]), _fake_run_fn(calls), tmp_path,
                              log=lambda _: None)

    assert sweep()[0].resumed and len(calls) == 1  # the new key at its default: the same run
    assert sweep(num_devices=8, progress_bar=True)[0].resumed and len(calls) == 1  # how it ran, not what
    with pytest.raises(ValueError, match=r"learning_rate=0.02, this sweep asks for 0.05: pass --rerun"):
        sweep(learning_rate=0.05)
    with pytest.raises(ValueError, match=r"plateau_evals='<default>', this sweep asks for 4"):
        sweep(plateau_evals=4)  # the new key set away from its default: a different run
    with pytest.raises(ValueError, match=r"model_kwargs.width=0.5, this sweep asks for 0.75"):
        sweep(model_kwargs={"width": 0.75})
    assert len(calls) == 1
    defaults = runs._schema_defaults()
    assert runs._relevant({"learning_rate": 0.02, "plateau_evals": 0, "num_devices": 8, "seed": 0}, defaults) == {
        "learning_rate": 0.02}


def _raising_run_fn(config, workdir):
    raise AssertionError(f"run_fn called for {workdir}: the finished run should have been shared")


def test_a_finished_run_of_another_experiment_is_shared_not_trained(tmp_path):
    calls: list = []
    base = runs.with_seeds({"v2": _trainer_like()}, [0, 1])
    first = runs.run_sweep(base, _fake_run_fn(calls), tmp_path / "exp_a", log=lambda _: None)
    assert len(calls) == 2
    # another experiment: the same network under another name, run on another device count
    specs = runs.with_seeds({"bottleneck": _trainer_like(num_devices=4)}, [0, 1])
    shared = runs.run_sweep(specs, _raising_run_fn, tmp_path / "exp_b", share_root=tmp_path, log=lambda _: None)
    assert [r.summary["shared_from"] for r in shared] == ["exp_a/v2-s0", "exp_a/v2-s1"]
    assert [(r.run_id, r.group, r.seed, r.resumed) for r in shared] == [
        ("bottleneck-s0", "bottleneck", 0, True), ("bottleneck-s1", "bottleneck", 1, True)]
    for a, b in zip(first, shared):
        np.testing.assert_array_equal(a.curve.values, b.curve.values)
        assert {k: v for k, v in b.summary.items() if k != "shared_from"} == a.summary
    workdir = tmp_path / "exp_b" / "runs" / "bottleneck-s0"
    final = runs.read_json(workdir / "final.json")
    assert final["run_id"] == "bottleneck-s0" and final["group"] == "bottleneck"
    assert final["config"]["num_devices"] == 4 and final["summary"]["shared_from"] == "exp_a/v2-s0"
    assert (workdir / "metrics.jsonl").read_text() == (tmp_path / "exp_a" / "runs" / "v2-s0" / "metrics.jsonl").read_text()
    assert "shared_from" not in runs.read_json(tmp_path / "exp_a" / "runs" / "v2-s0" / "final.json")["summary"]
    # a third experiment finds the original, never a copy
    third = runs.run_sweep(runs.with_seeds({"c": _trainer_like()}, [0]), _raising_run_fn, tmp_path / "exp_c",
                           share_root=tmp_path, log=lambda _: None)
    assert third[0].summary["shared_from"] == "exp_a/v2-s0"
    # a run of other settings (another learning rate, another seed) is trained, not shared
    other = runs.with_seeds({"v2": _trainer_like(learning_rate=0.05)}, [0]) + runs.with_seeds({"v2": _trainer_like()}, [7])
    trained = runs.run_sweep(other, _fake_run_fn(calls), tmp_path / "exp_d", share_root=tmp_path, log=lambda _: None)
    assert len(calls) == 4 and not any("shared_from" in r.summary for r in trained)
    # without share_root, or with --rerun, nothing is shared
    runs.run_sweep(base[:1], _fake_run_fn(calls), tmp_path / "exp_e", log=lambda _: None)
    runs.run_sweep(base[:1], _fake_run_fn(calls), tmp_path / "exp_f", share_root=tmp_path, rerun=True, log=lambda _: None)
    assert len(calls) == 6
    assert runs.find_finished_run(tmp_path, _trainer_like(learning_rate=0.3)) is None


def test_sweep_rejects_bad_input(tmp_path):
    specs = runs.with_seeds({"a": {"quality": 0.5}}, seeds=[0])
    with pytest.raises(ValueError, match="duplicate"):
        runs.run_sweep(specs + specs, _fake_run_fn([]), tmp_path, log=lambda _: None)
    with pytest.raises(ValueError, match="run id"):
        runs.run_sweep([runs.RunSpec("../x", "a", 0, {})], _fake_run_fn([]), tmp_path, log=lambda _: None)
    with pytest.raises(ValueError, match="logged no 'eval_accuracy'"):  # no metrics.jsonl written
        runs.run_sweep(specs, lambda c, w: {"eval_accuracy": 1.0}, tmp_path / "other", log=lambda _: None)
    assert not (tmp_path / "other" / "runs" / "a-s0" / "final.json").exists()
    with pytest.raises(TypeError, match="dict"):
        runs.run_sweep(specs, lambda c, w: 0.5, tmp_path / "third", log=lambda _: None)


def test_plots_and_report_gathering(tmp_path):
    results = runs.run_sweep(
        runs.with_seeds({"good": {"quality": 0.9}, "bad": {"quality": 0.6}}, seeds=[0, 1]),
        _fake_run_fn([]), tmp_path / "fake", log=lambda _: None)
    groups = runs.aggregate(results)
    exp = runs.experiment_dir("fake", tmp_path)
    plots.plot_curves(groups, exp / "curves.png", title="fake")
    plots.plot_tradeoff([plots.TradeoffPoint("a", 5e7, 0.6, 0.01, "w=0.5"), plots.TradeoffPoint("b", 2e8, 0.7, 0.01, "w=0.5")],
                         exp / "tradeoff.png", title="fake")
    plots.plot_bars(["good", "bad"], [0.9, 0.6], [0.01, 0.02], exp / "bars.png", title="fake")
    for name in ("curves.png", "tradeoff.png", "bars.png"):
        assert (exp / name).read_bytes()[:4] == b"\x89PNG"
    reports.write_report(exp, title="Fake experiment", paper_claim="good > bad.", outcome="**Supported.** yes.",
                        command="python -m experiments.fake", figures=[("curves", "curves.png")],
                        sections=[("Table", reports.markdown_table(["a", "b"], [[1, 2]]))])
    with pytest.raises(FileNotFoundError):
        reports.write_report(exp, title="x", paper_claim="", outcome="", command="", figures=[("c", "missing.png")])
    page = report.gather(tmp_path)
    assert "](fake/curves.png)" in page and "## Fake experiment" in page and "| Supported. |" in page
    with pytest.raises(ValueError, match="cells"):
        reports.markdown_table(["a"], [[1, 2]])
