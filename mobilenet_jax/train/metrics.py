"""The one place metrics are written: `<workdir>/metrics.jsonl` (one JSON object a line:
{"step", "split", ...}) and TensorBoard events in `<workdir>/tensorboard` (when TensorFlow
is importable; GPU benchmark machines without it get a warning, not a failure). Only
process 0 writes. Both go through the path layer (mobilenet_jax/paths.py), so a gs:// workdir
keeps them in the bucket; TensorFlow writes the events through its own file system."""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Mapping

from mobilenet_jax import paths

log = logging.getLogger("mobilenet_jax")
METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    def __init__(self, workdir: paths.PathLike, *, enabled: bool = True, tensorboard: bool = True):
        workdir = paths.resolve(workdir, "--workdir")
        self.path = workdir / METRICS_FILE
        self.enabled = enabled
        self._out = paths.TextAppender(self.path)
        self._tb = None
        if enabled:
            workdir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                logdir = workdir / "tensorboard"
                try:
                    self._tb = _TfEventWriter(paths.to_str(logdir))
                except ImportError as e:
                    log.warning("TensorBoard events disabled (%s); metrics.jsonl is still written", e)
                except Exception as e:  # TensorFlow's file system cannot serve the logdir
                    raise paths.PathError(
                        f"TensorBoard events: TensorFlow cannot write {logdir} "
                        f"({type(e).__name__}: {' '.join(str(e).split())[:300]}); set "
                        f"--config.tensorboard=false to keep only metrics.jsonl"
                    ) from e

    def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _plain(v) for k, v in metrics.items()})
        self._out.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.scalar(f"{split}/{k}", float(v), int(step))
            self._tb.flush()

    def flush(self) -> None:
        """Makes every record written so far readable. In a bucket records are buffered (see
        paths.TextAppender): the trainer flushes at each checkpoint, so the file holds every
        record up to the checkpoint a resumed run starts from, and before it reads the file."""
        if self.enabled:
            self._out.flush()

    def truncate_after(self, step: int) -> None:
        """Drops records past `step` (written after the checkpoint a resumed run starts
        from), so the file reads as one uninterrupted run."""
        if not self.enabled:
            return
        self._out.flush()
        if not self.path.exists():
            return
        records = read_metrics(self.path.parent)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))
        self._out.forget()

    def set_aside(self):
        """A fresh start (no checkpoint to resume) in a workdir whose metrics.jsonl is left from an
        earlier run: renames the file to metrics.orphaned-<n>.jsonl, so the new run's file reads as
        one run and nothing already written is lost. Returns the new path, or None."""
        if not self.enabled or not self.path.exists():
            return None
        self._out.forget()  # pending lines go to the old file; the next flush starts the new one
        n = 1
        while (target := self.path.with_name(f"metrics.orphaned-{n}.jsonl")).exists():
            n += 1
        self.path.rename(target)
        log.warning("%s held records of an earlier run and no checkpoint resumes it: renamed it to %s; "
                    "this run starts a new %s", self.path, target.name, METRICS_FILE)
        return target

    def close(self) -> None:
        self.flush()
        if self._tb is not None:
            self._tb.close()


class _TfEventWriter:
    """TensorBoard event files through TensorFlow's public `tf.summary.write` (TensorFlow's
    core op: no `tensorboard` package needed, which `tf.summary.scalar` and flax's
    SummaryWriter are); TensorFlow is imported only here, only when events are wanted."""

    def __init__(self, logdir: str):
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        self._tf = tf
        self._writer = tf.summary.create_file_writer(logdir)

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.write(tag, self._tf.constant(value, self._tf.float32), step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf
    return v


def read_metrics(workdir: paths.PathLike, split: str | None = None) -> list[dict]:
    """Records of `<workdir>/metrics.jsonl`, optionally of one split ("train" / "eval"),
    e.g. the eval-accuracy curve: [(r["step"], r["accuracy"]) for r in read_metrics(d, "eval")]."""
    path = paths.resolve(workdir, "workdir") / METRICS_FILE
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
