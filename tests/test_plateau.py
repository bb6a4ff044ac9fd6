"""The plateau rule (mobilenet_jax/train/plateau.py) on constructed curves, and the trainer stopping
by it (config.plateau_*) on the tiny config: where it stops, what it logs, that a stopped run stays
stopped when run again, and the held-out test split evaluated once at the end."""
from __future__ import annotations

import numpy as np
import pytest

from mobilenet_jax.train.plateau import plateau_index, plateau_phases
from tests._train_helpers import read_metrics_lines, tiny_config


def _steps(n: int, every: int = 50) -> list[int]:
    return [every * (i + 1) for i in range(n)]


def _index(values, k=3, delta=0.01, **kw):
    return plateau_index(_steps(len(values)), values, k=k, delta=delta, **kw)


def test_a_rising_curve_has_no_plateau():
    assert _index([0.1, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9]) is None
    assert _index([]) is None
    assert _index([0.2, 0.9, 0.9]) is None  # too few evaluations after the flat point to tell


def test_a_flat_tail_plateaus_at_its_first_flat_evaluation():
    flat = [0.2, 0.5, 0.8, 0.95, 0.955, 0.95, 0.958, 0.957]
    assert _index(flat) == 3  # 0.95 at step 200; the next 3 evals add < 1 point
    assert _index(flat, delta=0.005) == 4  # stricter: 0.95 -> 0.958 is not flat, 0.955 -> 0.958 is
    assert _index(flat, k=1) == 3 and _index(flat, k=4) == 3
    assert _index([0.5, 0.5, 0.5, 0.5], k=3, delta=1e-9) == 0  # no improvement at all
    # improvement is measured against the best so far, not the evaluation itself: a dip is no reset
    noisy = [0.5, 0.9, 0.88, 0.915, 0.89, 0.93, 0.93, 0.93, 0.935]
    assert _index(noisy) == 5  # each of 0.9, 0.915 is beaten by >= 1 point within 3 evals
    assert _index([0.1, 0.9, 0.5, 0.5, 0.5, 0.5], k=3) == 1  # 0.5s never beat the earlier 0.9


def test_min_step_keeps_a_flat_start_at_chance_from_being_a_plateau():
    stuck = [0.1, 0.1, 0.1, 0.1, 0.5, 0.9, 0.9, 0.9, 0.9]  # steps 50..450; takes off at 250
    assert _index(stuck) == 0  # the rule alone calls the chance-level start flat
    assert _index(stuck, min_step=100) == 5  # from step 100 on: step 100-200 are beaten by 0.5 / 0.9
    assert _index(stuck, min_step=300) == 5 and _index(stuck, min_step=301) is None  # 350+: < k evals left
    assert _index(stuck[:8], min_step=100) is None  # k=3 evaluations after 300 not yet logged


def test_a_flat_tail_after_the_learning_rate_decayed_is_no_plateau():
    curve = [0.1, 0.3, 0.5, 0.7, 0.8, 0.85, 0.86, 0.86, 0.86, 0.86]  # steps 50..500
    seen = []

    def decayed(step):  # the schedule ran out at step 300: a tenth of the peak from there on
        seen.append(step)
        return 1.0 if step < 300 else 0.1

    assert _index(curve, delta=0.02) == 5  # without the guard: flat from step 300
    assert _index(curve, delta=0.02, lr_fraction=decayed, min_lr_fraction=0.5) is None
    assert all(isinstance(s, int) for s in seen) and 300 in seen
    assert _index(curve, delta=0.02, lr_fraction=decayed, min_lr_fraction=0.1) == 5  # 0.1 >= 0.1: allowed
    assert _index(curve, delta=0.02, lr_fraction=lambda s: 1.0, min_lr_fraction=1.0) == 5  # constant lr


# A steady rise of a point per 5 evaluations with one lucky evaluation (+2 points at index 3), then a level.
_RISE = [0.70 + 0.002 * i + (0.02 if i == 3 else 0.0) for i in range(20)]
_LEVEL = _RISE + [_RISE[-1]] * 10


def test_the_mean_statistic_does_not_call_a_slow_noisy_rise_flat():
    # The best-so-far holds the lucky evaluation, which the next 5 fail to beat by half a point while the
    # curve climbs under it; a window mean moves by a fifth of the luck and sees the climb.
    assert _index(_RISE, k=5, delta=0.005) == 3
    assert _index(_RISE, k=5, delta=0.005, statistic="mean") is None
    # Once the curve levels off: at the rise's last evaluation (19) the flat window after it is 0.4 points
    # above the window up to it (at 18: 0.6).
    assert _index(_LEVEL, k=5, delta=0.005, statistic="mean") == 19
    # The first candidate of the mean rule has k evaluations up to it: a flat curve plateaus at k - 1.
    assert _index([0.5] * 8, k=3, delta=1e-9, statistic="mean") == 2
    assert _index([0.5] * 5, k=3, delta=1e-9, statistic="mean") is None  # 2 evaluations after index 2


def test_the_trainer_reads_plateau_statistic():
    from mobilenet_jax.train.config import ConfigError, default_config, validate_config
    from mobilenet_jax.train.loop import _plateau_at

    config = default_config()
    config.update(plateau_evals=5, plateau_delta=0.005, lr_schedule="constant", warmup_steps=0)
    history = [(100 * (i + 1), v) for i, v in enumerate(_RISE)]
    assert _plateau_at(config, history, lambda s: config.learning_rate) == ((), (400, 900))
    config.plateau_statistic = "mean"
    assert _plateau_at(config, history, lambda s: config.learning_rate) == ((), None)
    config.plateau_statistic = "median"
    with pytest.raises(ConfigError, match="unknown plateau_statistic 'median'"):
        validate_config(config, num_devices=1)


def test_phases_reduce_at_each_plateau_then_stop_at_the_last():
    """plateau_phases: phase 0 plateaus at 0.6 (index 2, rule met at 4), a new phase from index 5
    plateaus at 0.75 (index 6, met at 8); each phase reads only its own evaluations."""
    curve = [0.1, 0.5, 0.6, 0.6, 0.6, 0.7, 0.75, 0.75, 0.75, 0.75]
    steps = _steps(len(curve))

    def phases(decays, values=curve):
        return plateau_phases(steps[:len(values)], values, decays=decays, k=2, delta=0.01)

    assert phases(0) == ([], plateau_index(steps, curve, k=2, delta=0.01)) == ([], 2)
    assert phases(1) == ([4], 6)
    assert phases(2) == ([4, 8], None)  # the third phase has one evaluation: not yet flat
    assert phases(1, curve[:8]) == ([4], None)  # the second phase's rule is not met yet
    # A phase's best is its own: below phase 0's 0.6 after the reduction, 0.55 -> 0.58 is a gain.
    assert phases(1, curve[:5] + [0.55, 0.58, 0.58, 0.58]) == ([4], 6)
    with pytest.raises(ValueError, match="decays must be >= 0"):
        phases(-1)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown plateau statistic 'max'"):
        plateau_index([1, 2, 3], [0.1, 0.2, 0.3], k=1, delta=0.01, statistic="max")
    with pytest.raises(ValueError, match="k >= 1"):
        plateau_index([1, 2, 3], [0.1, 0.2, 0.3], k=0, delta=0.01)
    with pytest.raises(ValueError, match="k >= 1"):
        plateau_index([1, 2, 3], [0.1, 0.2, 0.3], k=-1, delta=0.01)
    with pytest.raises(ValueError, match="3 steps but 2 values"):
        plateau_index([1, 2, 3], [0.1, 0.2], k=1, delta=0.01)


# ---------------------------------------------------------------- the trainer

# Evaluations every 2 steps; a delta of 0.99 makes any realistic change flat (accuracy would have to
# jump from 0 to 100% on 40 images), so where the run stops is set by plateau_min_steps alone: the
# first candidate is the evaluation at step 4, flat once the k=2 evaluations after it (6, 8) are in.
PLATEAU = dict(num_devices=1, lr_schedule="constant", warmup_steps=0, eval_every_steps=2, plateau_evals=2,
               plateau_delta=0.99, plateau_min_steps=4, plateau_min_lr_fraction=0.5, checkpoint_every_steps=0,
               test_split="validation", embedded_num_validation=24, keep_best_checkpoint=False)


def _records(workdir, split):
    return [r for r in read_metrics_lines(workdir) if r["split"] == split]


def _rule(steps, acc):
    """The trainer's rule for PLATEAU on a logged curve (constant learning rate: fraction 1)."""
    return plateau_index(steps, acc, k=2, delta=0.99, min_step=4, lr_fraction=lambda s: 1.0, min_lr_fraction=0.5)


def test_trainer_stops_at_the_plateau_and_stays_stopped(tmp_path):
    from mobilenet_jax.train import train_and_evaluate

    config = tiny_config(num_train_steps=20, **PLATEAU)
    workdir = str(tmp_path / "run")
    result = train_and_evaluate(config, workdir)
    assert result["step"] == 8 < config.num_train_steps and not result["preempted"]

    evals = _records(workdir, "eval")
    steps, acc = [r["step"] for r in evals], [r["accuracy"] for r in evals]
    assert steps == [2, 4, 6, 8]
    # the step the trainer reports is the rule's, applied to the logged curve
    i = _rule(steps, acc)
    assert i == 1 and result["plateau_step"] == steps[i] == 4
    assert _rule(steps[:3], acc[:3]) is None  # not yet met at step 6
    assert _records(workdir, "stop") == [{"step": 8, "split": "stop", "plateau_step": 4, "end_step": 8}]
    assert max(r["step"] for r in _records(workdir, "train")) == 8  # no training past the stop

    # the held-out split: once, on the final state, on its own images
    test = _records(workdir, "test")
    assert len(test) == 1 and test[0]["step"] == 8 and test[0]["num_examples"] == 24
    assert result["test_accuracy"] == test[0]["accuracy"] and result["test_num_examples"] == 24
    assert result["eval_num_examples"] == 40  # the monitored split is another one

    again = train_and_evaluate(config, workdir)  # the same command again: nothing left to train
    assert again["step"] == 8 and again["plateau_step"] == 4
    assert again["eval_accuracy"] == pytest.approx(acc[-1])
    assert again["test_accuracy"] == pytest.approx(result["test_accuracy"])
    assert [r["step"] for r in _records(workdir, "eval")] == steps
    assert max(r["step"] for r in _records(workdir, "train")) == 8
    assert len(_records(workdir, "test")) == 1 and len(_records(workdir, "stop")) == 1


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    """A budget of 8 steps: the rule is first met at the evaluation at step 8, the budget's last.
    (The first call's result, the workdir.)"""
    from mobilenet_jax.train import train_and_evaluate

    config = tiny_config(num_train_steps=8, **{**PLATEAU, "test_split": ""})
    workdir = str(tmp_path_factory.mktemp("budget") / "run")
    return config, train_and_evaluate(config, workdir), workdir


def test_a_rule_met_only_at_the_budget_is_a_fixed_budget_run(budget_run):
    """A run whose rule is first met at its budget's last evaluation has plateaued (it records the
    plateau step) but did not stop early: no "stop" record, every evaluation of the budget logged."""
    _, result, workdir = budget_run
    evals = _records(workdir, "eval")
    assert [r["step"] for r in evals] == [2, 4, 6, 8] and result["step"] == 8
    assert _rule([r["step"] for r in evals], [r["accuracy"] for r in evals]) == 1
    assert result["plateau_step"] == 4
    assert _records(workdir, "stop") == [] and _records(workdir, "test") == [] and "test_accuracy" not in result


def test_running_a_finished_budget_run_again_reports_the_same_plateau_step(budget_run):
    from mobilenet_jax.train import train_and_evaluate

    config, result, workdir = budget_run
    again = train_and_evaluate(config, workdir)
    assert again["step"] == result["step"] == 8
    assert again["plateau_step"] == result["plateau_step"]


def test_a_cooldown_decays_the_rate_linearly_after_the_plateau_and_a_rerun_adds_nothing(tmp_path):
    """plateau_cooldown_steps: once the rule is met (step 8), the rate falls linearly from its peak to 0
    over 4 more steps, then the run ends; the same command again trains nothing."""
    from mobilenet_jax.train import train_and_evaluate

    config = tiny_config(num_train_steps=20, **{**PLATEAU, "plateau_cooldown_steps": 4, "log_every_steps": 1})
    workdir = str(tmp_path / "run")
    result = train_and_evaluate(config, workdir)
    assert result["step"] == 12 and result["plateau_step"] == 4
    assert _records(workdir, "stop") == [{"step": 8, "split": "stop", "plateau_step": 4, "end_step": 12}]
    lr = {r["step"]: r["learning_rate"] for r in _records(workdir, "train")}
    peak = config.learning_rate
    assert sorted(lr) == list(range(1, 13))
    assert all(lr[s] == pytest.approx(peak) for s in range(1, 10))  # the update of step 9 is the first cooled one's base
    assert [lr[s] / peak for s in (10, 11, 12)] == pytest.approx([0.75, 0.5, 0.25])
    assert [r["step"] for r in _records(workdir, "test")] == [12]

    again = train_and_evaluate(config, workdir)
    assert again["step"] == 12 and again["plateau_step"] == 4
    assert max(r["step"] for r in _records(workdir, "train")) == 12 and len(_records(workdir, "test")) == 1


def test_reduce_on_plateau_lowers_the_rate_then_stops_and_resumes_bit_equal(tmp_path):
    """plateau_decays=1: the first plateau (rule met at step 8) halves the rate from the next update
    on and starts a phase that reads only its own evaluations (10, 12, 14: flat at 10, met at 14),
    whose plateau stops the run. A run resumed from its step-10 checkpoint (after the reduction)
    ends where the uninterrupted one does, with the same rates."""
    import shutil

    from mobilenet_jax.train import train_and_evaluate
    from tests._train_helpers import assert_trees_close, load_checkpoint

    config = tiny_config(num_train_steps=30, **{**PLATEAU, "plateau_decays": 1, "plateau_decay_factor": 0.5,
                                                "log_every_steps": 1, "checkpoint_every_steps": 2,
                                                "keep_checkpoints": 10, "test_split": ""})
    reference = tmp_path / "reference"
    result = train_and_evaluate(config, str(reference))
    assert result["step"] == 14 and result["plateau_step"] == 10 and result["plateau_reduced_at"] == [8]
    assert _records(reference, "reduce") == [{"step": 8, "split": "reduce", "learning_rate_factor": 0.5}]
    assert _records(reference, "stop") == [{"step": 14, "split": "stop", "plateau_step": 10, "end_step": 14}]
    lr = {r["step"]: r["learning_rate"] / config.learning_rate for r in _records(reference, "train")}
    assert sorted(lr) == list(range(1, 15))
    assert [lr[s] for s in range(1, 15)] == pytest.approx([1.0] * 8 + [0.5] * 6)

    resumed = tmp_path / "resumed"
    shutil.copytree(reference, resumed)
    for step_dir in (resumed / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > 10:
            shutil.rmtree(step_dir)
    assert sorted(int(d.name) for d in (resumed / "checkpoints").iterdir() if d.name.isdigit())[-1] == 10
    again = train_and_evaluate(config, str(resumed))
    assert again["step"] == 14 and again["plateau_reduced_at"] == [8] and again["plateau_step"] == 10
    lr_again = {r["step"]: r["learning_rate"] for r in _records(resumed, "train") if r["step"] > 10}
    assert lr_again == pytest.approx({s: 0.5 * config.learning_rate for s in range(11, 15)})
    final, expected = load_checkpoint(str(resumed), 14), load_checkpoint(str(reference), 14)
    for key in ("params", "batch_stats", "opt_state", "ema_params"):
        assert_trees_close(final[key], expected[key], rtol=1e-6, atol=1e-7)
