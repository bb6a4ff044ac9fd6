"""Markdown and CSV output of the experiments: tables, the report page, the curves and summary rows."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mobilenet_jax import paths
from experiments.runs import GroupStats, RunResult


def curves_rows(results: Sequence[RunResult], metric: str = "eval_accuracy") -> list[dict[str, Any]]:
    """Every run's curve in long format, for ``curves.csv``."""
    return [
        {"run_id": r.run_id, "group": r.group, "seed": r.seed, "step": int(s), metric: float(v)}
        for r in results
        for s, v in zip(r.curve.steps, r.curve.values)
    ]


def summary_rows(stats: Mapping[str, GroupStats], metric: str = "eval_accuracy") -> list[dict[str, Any]]:
    """One row per variant: final mean, std, min, max over seeds, for ``summary.csv``."""
    return [
        {
            "group": s.group,
            "seeds": " ".join(map(str, s.seeds)),
            "final_step": int(s.steps[-1]),
            f"{metric}_mean": s.final_mean,
            f"{metric}_std": s.final_std,
            f"{metric}_min": float(s.finals.min()),
            f"{metric}_max": float(s.finals.max()),
        }
        for s in stats.values()
    ]



def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed as given (format them first)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, table has {len(headers)} columns")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def write_report(
    exp_dir: str | Path,
    *,
    title: str,
    paper_claim: str,
    outcome: str,
    command: str,
    figures: Sequence[tuple[str, str]] = (),
    sections: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``exp_dir/report.md``: title, the paper's claim, this run's outcome, the command, figures, sections.

    ``figures`` are (caption, file name relative to exp_dir); ``sections`` are (heading, markdown body).
    """
    exp_dir = paths.resolve(exp_dir, "--out")
    for _, name in figures:
        if not (exp_dir / name).exists():
            raise FileNotFoundError(f"report figure {exp_dir / name} does not exist")
    parts = [
        f"# {title}",
        f"**The paper's claim.** {paper_claim.strip()}",
        f"**This run.** {outcome.strip()}",
        f"**Reproduce.** `{command}`",
    ]
    parts += [f"![{caption}]({name})\n\n*{caption}*" for caption, name in figures]
    parts += [f"## {heading}\n\n{body.strip()}" for heading, body in sections]
    path = exp_dir / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path


