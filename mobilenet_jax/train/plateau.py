"""The plateau rule: when has a run stopped improving? One definition, used by the trainer to
stop (config.plateau_*) and by the experiments' reports to flag each run.

A run has plateaued at its i-th evaluation when the ``k`` evaluations after it never improve
on the best value up to it by ``delta`` or more (max(v[i+1..i+k]) - max(v[..i]) < delta),
the i-th evaluation is at step >= ``min_step``, the best value up to it is at least
``min_value``, and the learning rate there is still at least ``min_lr_fraction`` of its peak:
a flat tail under a schedule that has run out is no plateau, and a run that has not started
learning (still at chance: below ``min_value``, or before ``min_step``) is not called flat.

:func:`plateau_phases` reduces the rate on a plateau before it stops: the rule read phase by
phase, each phase's evaluations on their own (the step decay "divide by 10 when validation
stops improving" of the ImageNet recipes, with the stop as the last phase's plateau).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

STATISTICS = ("best", "mean")


def plateau_index(
    steps: Sequence[int], values: Sequence[float], *, k: int, delta: float, min_step: int = 0,
    min_value: float = -np.inf, lr_fraction: Callable[[int], float] | None = None, min_lr_fraction: float = 0.0,
    statistic: str = "best",
) -> int | None:
    """The index of the first evaluation the run plateaued at (see the module docstring), or
    None (still improving, or fewer than ``k`` evaluations after any candidate)."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown plateau statistic {statistic!r}; expected one of {STATISTICS}")
    if k < 1:
        raise ValueError(f"the plateau rule needs k >= 1 evaluations after the flat point, got {k}")
    v = np.asarray(values, dtype=np.float64)
    if len(v) != len(steps):
        raise ValueError(f"{len(steps)} steps but {len(v)} values")
    best = np.maximum.accumulate(v) if v.size else v
    for i in range(k - 1 if statistic == "mean" else 0, len(v) - k):
        if steps[i] < min_step or best[i] < min_value:
            continue
        if lr_fraction is not None and lr_fraction(int(steps[i])) < min_lr_fraction:
            continue
        after = v[i + 1 : i + 1 + k]
        gain = np.max(after) - best[i] if statistic == "best" else np.mean(after) - np.mean(v[i + 1 - k : i + 1])
        if gain < delta:
            return i
    return None


def plateau_phases(
    steps: Sequence[int], values: Sequence[float], *, decays: int, k: int, delta: float, min_step: int = 0,
    min_value: float = -np.inf, lr_fraction: Callable[[int], float] | None = None, min_lr_fraction: float = 0.0,
    statistic: str = "best",
) -> tuple[list[int], int | None]:
    """The rule with up to ``decays`` rate reductions: (the indices of the evaluations at which a
    phase's rule was met and the rate was reduced, the index the last phase plateaued at or None).

    Phase 0 reads the whole history with ``min_step``; after the rule is met at evaluation j
    (k after the flat point) a new phase starts, which reads only the evaluations after j: its
    best is its own, so the jump a lower rate gives is not counted as flatness or as a gain.
    With ``decays=0`` this is :func:`plateau_index`. ``lr_fraction`` should be the rate before any
    reduction (a reduced rate is not a schedule that ran out)."""
    if decays < 0:
        raise ValueError(f"decays must be >= 0, got {decays}")
    rule = dict(k=k, delta=delta, min_value=min_value, lr_fraction=lr_fraction, min_lr_fraction=min_lr_fraction,
                statistic=statistic)
    reduced: list[int] = []
    while True:
        first = reduced[-1] + 1 if reduced else 0
        i = plateau_index(steps[first:], values[first:], min_step=0 if reduced else min_step, **rule)
        if i is None:
            return reduced, None
        if len(reduced) == decays:
            return reduced, first + i
        reduced.append(first + i + k)
