"""The trainer: `train_and_evaluate(config, workdir)`, used by the CLI, the experiments and
the benchmarks alike. Re-running with the same workdir resumes from the latest checkpoint;
the data order and dropout RNG depend only on (seed, step), so a resumed run ends where an
uninterrupted one would. On SIGTERM (a preempted TPU or spot VM) every process saves a
checkpoint at the same step boundary and the run returns with `result["preempted"]`."""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mobilenet_jax import paths
from mobilenet_jax.data import Dataset, HostLayout, build_dataset, prefetch_to_device, prepare_data
from mobilenet_jax.data.pipeline import AXIS, device_mesh
from mobilenet_jax.errors import UserError
from mobilenet_jax.tasks import Task, build_task, evaluator, select
from mobilenet_jax.train import distributed, plateau
from mobilenet_jax.train.checkpoint import Checkpoints
from mobilenet_jax.train.config import ConfigError, validate_config
from mobilenet_jax.train.metrics import MetricWriter, read_metrics
from mobilenet_jax.train.optim import Durations, build_optimizer, peak_learning_rate, resolve_durations
from mobilenet_jax.train.state import create_train_state
from mobilenet_jax.train.steps import make_train_step, pmap_train_step

log = logging.getLogger("mobilenet_jax")


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss became NaN or Inf; training stopped before checkpointing it."""


def build_model(config: ml_collections.ConfigDict, num_classes: int):
    from mobilenet_jax import create_model

    return create_model(
        config.model, num_classes=num_classes, dtype=jnp.dtype(config.dtype),
        bn_axis_name=AXIS, **config.model_kwargs,
    )


def _every(value: int, steps_per_epoch: int) -> int:
    """-1: once per epoch; 0: never (only at the end); n: every n steps."""
    return steps_per_epoch if value < 0 else value


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)



def _check_finite(pending: list[tuple[int, Any]], last_ckpt: Optional[str]) -> list[dict]:
    """Fetches per-step metrics and raises NonFiniteLossError at the first bad loss."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
        if not np.isfinite(m["loss"]):
            raise NonFiniteLossError(
                f"training loss is {float(m['loss'])} at step {step}; training stopped. "
                f"Last good checkpoint: {last_ckpt or 'none written yet'} (untouched). "
                f"Lower config.learning_rate, add warmup or gradient clipping, or check the data."
            )
    return fetched


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step",
                dynamic_ncols=True, desc="train")


def _plateau_at(config, history: list[tuple[int, float]], schedule) -> tuple[tuple[int, ...], tuple[int, int] | None]:
    """config.plateau_*: (the steps at which the rate was reduced, config.plateau_decays of them at
    most; (the step the last phase plateaued at, the step of the evaluation that completed the
    rule: k evaluations later) or None), per train/plateau.py. `schedule` is the unreduced one."""
    if config.plateau_evals <= 0 or not history:
        return (), None
    peak = peak_learning_rate(config)
    steps, values = zip(*history)
    k = config.plateau_evals
    reduced, i = plateau.plateau_phases(
        steps, values, decays=config.plateau_decays, k=k, delta=config.plateau_delta,
        min_step=config.plateau_min_steps, min_value=config.plateau_min_value,
        lr_fraction=lambda s: float(schedule(s)) / peak, min_lr_fraction=config.plateau_min_lr_fraction,
        statistic=config.plateau_statistic)
    # The rule for i reads only the k evaluations after it, so it was first met at eval i + k.
    return tuple(int(steps[j]) for j in reduced), None if i is None else (int(steps[i]), int(steps[i + k]))


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: paths.PathLike, *,
    dataset: Optional[Dataset] = None,
) -> dict[str, Any]:
    """Trains (or resumes) `config` in `workdir`; returns the final metrics:
    {"step", "train_loss", "train_accuracy", "eval_accuracy", "eval_loss", ...}.

    `dataset` replaces the one the config names (in-process experiments, tests); it must
    follow the contract of mobilenet_jax/data/pipeline.py for this process's devices.
    Every invalid setting raises ConfigError before anything is compiled; a tfds data set is
    prepared in config.data_dir on first use, or raises DataError, before the workdir is
    created; a workdir that cannot be written (a URI no file system serves, a bucket out of
    reach) raises paths.PathError before anything is written.
    """
    distributed.maybe_initialize(config.distributed)
    num_devices = jax.local_device_count() if config.num_devices < 0 else config.num_devices
    if num_devices > jax.local_device_count():
        raise ConfigError(
            f"config.num_devices={num_devices} > {jax.local_device_count()} local devices"
        )
    validate_config(config, num_devices=num_devices, process_count=jax.process_count())
    if dataset is None:  # before the workdir exists: data that cannot be had leaves nothing there
        prepare_data(config)
    workdir = paths.writable_dir(workdir, "--workdir")
    distributed.enable_compilation_cache(config.compilation_cache_dir)
    primary = jax.process_index() == 0
    layout = HostLayout(jax.process_index(), jax.process_count(), num_devices)
    ds = dataset if dataset is not None else build_dataset(config, layout)
    spe = config.steps_per_epoch if config.steps_per_epoch > 0 else ds.info.num_train // config.batch_size
    durations: Durations = resolve_durations(config, spe)
    tx, schedule = build_optimizer(config, durations)
    model = build_model(config, ds.info.num_classes)
    task = build_task(config, model)  # the loss, the evaluation and the metric to keep the best by

    writer = MetricWriter(workdir, enabled=primary, tensorboard=config.tensorboard)
    ckpts = Checkpoints(workdir, keep=config.keep_checkpoints, keep_best=config.keep_best_checkpoint,
                        best_metric=task.best_metric)
    # From here on SIGTERM means: save at the next step boundary (the first, during setup).
    notice = distributed.PreemptionNotice().start()
    try:
        return _run(config, workdir, ds, model, task, tx, schedule, durations, num_devices, primary,
                    writer, ckpts, notice)
    finally:
        notice.stop()
        ckpts.close()
        writer.close()


def _run(config, workdir, ds, model, task: Task, tx, schedule, durations, num_devices, primary,
         writer, ckpts, notice) -> dict[str, Any]:
    state = create_train_state(
        model, tx, jax.random.key(config.seed), config.image_size, use_ema=config.ema_decay > 0
    )
    start = 0
    last_ckpt = None
    restored = ckpts.restore_newest_readable(state, primary=primary)
    if restored is not None:
        state = restored
        start = int(state.step)
        last_ckpt = ckpts.path(start)
        writer.truncate_after(start)
        log.info("resumed from %s (step %d)", last_ckpt, start)
    elif primary:
        writer.set_aside()  # metrics left by a run whose checkpoints are gone: not appended to
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    # One copy of the state on each local device; pmap reads it with in_axes=None.
    state = jax.device_put(state, NamedSharding(device_mesh(num_devices), PartitionSpec()))

    evaluate = evaluator(task)
    # The evaluation history the plateau rule reads (a resumed run's, from its metrics).
    history = [(r["step"], r[task.best_metric]) for r in read_metrics(workdir, "eval")
               if r["step"] <= start and task.best_metric in r] if start else []
    loss_fn = task.loss_fn()

    def compile_step(tx, schedule):
        return pmap_train_step(make_train_step(
            model, tx, schedule, ema_decay=config.ema_decay, ema_warmup=config.ema_warmup,
            dropout_seed=config.seed, loss_fn=loss_fn,
        ))

    base_schedule = schedule  # the plateau rule reads the schedule before any cool-down
    total = durations.total_steps
    eval_every = _every(config.eval_every_steps, durations.steps_per_epoch)
    ckpt_every = _every(config.checkpoint_every_steps, durations.steps_per_epoch)
    log.info("training %s on %s: %d steps (%d per epoch), global batch %d on %d device(s) x %d "
             "process(es), starting at step %d", config.model, ds.info.name, total,
             durations.steps_per_epoch, config.batch_size, num_devices, jax.process_count(), start)

    reduced_at, found = _plateau_at(config, history, base_schedule)
    result: dict[str, Any] = {"step": start, "preempted": False, "plateau_step": found[0] if found else -1,
                              "plateau_reduced_at": list(reduced_at)}
    if found is not None:  # a run that stopped at its plateau stays stopped (or finishes its cool-down)
        total = _after_plateau(config, found[1], start)
    cooldown_from = found[1] if found is not None and config.plateau_cooldown_steps > 0 else None
    if reduced_at or cooldown_from is not None:
        tx, schedule = build_optimizer(config, durations, cooldown_from=cooldown_from, reduced_at=reduced_at)
    train_step = compile_step(tx, schedule)
    batches = prefetch_to_device((select(b, task.batch_keys, task) for b in ds.train_batches(start)),
                                 config.prefetch, num_devices)
    bar = _progress(total, start, primary and config.progress_bar)
    pending: list[tuple[int, Any]] = []
    t0, steps_timed = time.perf_counter(), 0
    try:
        step = start
        while step < total:
            step += 1
            state, metrics = train_step(state, next(batches))
            pending.append((step, metrics))
            steps_timed += 1
            bar.update(1)
            # Every process asks at every step: the multi-process answer is a common step.
            preempted = notice.reached(step) and step < total
            log_now = step % config.log_every_steps == 0 or step == total or preempted
            ckpt_now = _due(step, ckpt_every, total) or preempted
            eval_now = _due(step, eval_every, total)
            if log_now or ckpt_now or eval_now:
                fetched = _check_finite(pending, last_ckpt)
                if log_now:
                    elapsed = time.perf_counter() - t0
                    train = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
                    train["images_per_second"] = steps_timed * config.batch_size / max(elapsed, 1e-9)
                    train["epoch"] = step / durations.steps_per_epoch
                    writer.write(step, "train", train)
                    bar.set_postfix(loss=f"{train['loss']:.4f}", img_s=f"{train['images_per_second']:.0f}")
                    result.update({f"train_{k}": v for k, v in train.items()})
                    t0, steps_timed = time.perf_counter(), 0
                pending = []
            if eval_now:
                metrics_eval = evaluate(state, ds, num_devices, config.prefetch)
                writer.write(step, "eval", metrics_eval)
                log.info("step %d eval %s", step, json.dumps(metrics_eval))
                result.update({f"eval_{k}": v for k, v in metrics_eval.items()})
                if metrics_eval and np.isfinite(metrics_eval[task.best_metric]):
                    ckpts.save_best(state, metrics_eval)
                    history.append((step, metrics_eval[task.best_metric]))
                t0, steps_timed = time.perf_counter(), 0
                first = found is None
                was_reduced_at = reduced_at
                reduced_at, found = _plateau_at(config, history, base_schedule)
                if found is not None:  # at the budget's last evaluation too
                    result["plateau_step"] = found[0]
                result["plateau_reduced_at"] = list(reduced_at)  # as a rerun of the finished run reports it
                if reduced_at != was_reduced_at and step < total:  # a phase's plateau: a lower rate from here
                    factor = config.plateau_decay_factor ** len(reduced_at)
                    log.info("plateau of eval %s (rule met at step %d): learning rate x %g from here",
                             task.best_metric, step, factor)
                    writer.write(step, "reduce", {"learning_rate_factor": factor})
                    tx, schedule = build_optimizer(config, durations, reduced_at=reduced_at)
                    train_step = compile_step(tx, schedule)
                if first and found is not None and step < total:
                    total = _after_plateau(config, step, step)
                    log.info("plateau of eval %s at step %d (rule met at step %d): %s", task.best_metric,
                             found[0], step, f"cooling down to step {total}" if total > step else "stopping")
                    writer.write(step, "stop", {"plateau_step": found[0], "end_step": total})
                    bar.total = total
                    if total > step:
                        tx, schedule = build_optimizer(config, durations, cooldown_from=step, reduced_at=reduced_at)
                        train_step = compile_step(tx, schedule)
                    else:
                        ckpt_now = True
            if ckpt_now:
                writer.flush()
                last_ckpt = ckpts.save(state)
                t0, steps_timed = time.perf_counter(), 0
            result["step"] = step
            if preempted:
                log.warning("preempted (SIGTERM): checkpoint %s written at step %d of %d; "
                            "re-run the same command to resume", last_ckpt, step, total)
                result["preempted"] = True
                break
    finally:
        bar.close()
    if start >= total:  # nothing left to train: report the finished run's evaluation
        metrics_eval = evaluate(state, ds, num_devices, config.prefetch)
        result.update({f"eval_{k}": v for k, v in metrics_eval.items()})
    if config.test_split and not result["preempted"]:
        # The held-out split, once, on the final state (never used for a decision).
        layout = HostLayout(jax.process_index(), jax.process_count(), num_devices)
        test_ds = build_dataset(_with_eval_split(config, config.test_split), layout)
        metrics_test = evaluate(state, test_ds, num_devices, config.prefetch)
        writer.flush()
        if start < total or not any(r["step"] == result["step"] for r in read_metrics(workdir, "test")):
            writer.write(result["step"], "test", metrics_test)
        result.update({f"test_{k}": v for k, v in metrics_test.items()})
    result["state"] = state
    return result


def _after_plateau(config, rule_met: int, now: int) -> int:
    """The last step of a run whose plateau rule was met at step `rule_met`: that step itself
    (stop), or the end of its cool-down; never before `now` (a resumed run's start)."""
    return max(rule_met + config.plateau_cooldown_steps, now)


def _with_eval_split(config: ml_collections.ConfigDict, split: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(config.to_dict())
    config.eval_split = split
    return config
