"""Single-thread, batch-1 latency through LiteRT, as the papers time their networks (V2 Table 4
and Table 6: one large core of a Pixel 1, TF-Lite; V3 Tables 3-6: one large core, one thread):

    python -m benchmarks.latency                                  # the default set (below)
    python -m benchmarks.latency --groups v3_table5 v3_sec5 --runs 100 --sessions 3
    python -m benchmarks.latency --groups all --image-size 224   # every timed network

Each network is a fresh one (random weights, BatchNorm statistics calibrated on the embedded
images: `mobilenet_jax.export.fresh`), exported as the papers ran it (float32, and full int8
for Table 4's quantized column) with `mobilenet_jax.export`, and timed by LiteRT's
Interpreter with XNNPACK and num_threads=1 in a process pinned to one core
(`os.sched_setaffinity`, where the OS has it): warm-up runs, then `--runs` invocations per
session; median and p90 in ms. `--formats onnx onnx_int8` adds the same files converted to
ONNX and timed by onnxruntime on one thread (the runtime of most non-Android deployments).
Absolute milliseconds on an x86 core are not a Pixel's, so the
table sets each group's ratios to its reference network beside the papers' ratios, with the
multiply-adds beside them. JSON under benchmarks/results/ with the machine, versions and
command. Table 5's "no-opt h-swish" column is timed by building h-swish from separate ops
(x * min(max(x / 6 + 0.5, 0), 1), which the converter does not fuse into HARD_SWISH).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from mobilenet_jax import cli
from mobilenet_jax.errors import UsageError

RESULTS_DIR = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class Timed:
    """One network the papers time: its group (a paper table), its fields, the paper's
    latency in ms (Pixel 1, one large core; None where the paper gives none) and whether it
    is its group's reference for the ratios."""

    group: str
    label: str
    model: str
    fields: dict
    resolution: int
    paper_ms: Optional[float]
    reference: bool = False
    separate_hswish: bool = False


def _t(group, label, model, paper_ms, resolution=224, reference=False, separate_hswish=False, **fields):
    return Timed(group, label, model, fields, resolution, paper_ms, reference, separate_hswish)


#: The papers' latency columns (../papers.md tables, Pixel 1). Sec. 5.1's deltas are given
#: as "saves 7 ms" / "2 ms" from the published V3-Large's 51.4 ms (Table 5).
TIMED: tuple[Timed, ...] = (
    _t("v2_table4", "MobileNetV1", "mobilenet_v1", 113),
    _t("v2_table4", "MobileNetV2", "mobilenet_v2", 75, reference=True),
    _t("v2_table4", "MobileNetV2 (1.4)", "mobilenet_v2", 143, width=1.4),
    _t("v3_table3", "V3-Large 1.0", "mobilenet_v3_large", 51),
    _t("v3_table3", "V3-Large 0.75", "mobilenet_v3_large", 39, width=0.75),
    _t("v3_table3", "V2 1.0", "mobilenet_v2", 64, reference=True),
    _t("v3_table3", "V3-Small 1.0", "mobilenet_v3_small", 15.8),
    _t("v3_table3", "V3-Small 0.75", "mobilenet_v3_small", 12.8, width=0.75),
    _t("v3_table3", "V2 0.35", "mobilenet_v2", 16.6, width=0.35),
    _t("v3_table5", "V3-Large (h-swish@80)", "mobilenet_v3_large", 51.4, reference=True),
    _t("v3_table5", "ReLU everywhere", "mobilenet_v3_large", 50.5, hswish_from=None),
    _t("v3_table5", "h-swish@16", "mobilenet_v3_large", 53.5, hswish_from=16),
    _t("v3_table5", "h-swish@112", "mobilenet_v3_large", 51, hswish_from=112),
    _t("v3_table5", "V3-Large, h-swish as separate ops", "mobilenet_v3_large", 57.5, separate_hswish=True),
    _t("v3_table5", "h-swish@16, separate ops", "mobilenet_v3_large", 68.9, hswish_from=16, separate_hswish=True),
    _t("v3_table5", "h-swish@112, separate ops", "mobilenet_v3_large", 54.4, hswish_from=112, separate_hswish=True),
    _t("v3_sec5", "V3-Large (efficient last stage, 16 h-swish stem)", "mobilenet_v3_large", 51.4, reference=True),
    _t("v3_sec5", "original last stage (Fig. 5)", "mobilenet_v3_large", 51.4 + 7, last_stage="original"),
    _t("v3_sec5", "32-filter ReLU stem", "mobilenet_v3_large", 51.4 + 2, stem="relu32"),
    _t("v3_table6", "SSDLite V1", "ssdlite", 228, 320, backbone="mobilenet_v1", num_classes=90),
    _t("v3_table6", "SSDLite V2", "ssdlite", 162, 320, reference=True, backbone="mobilenet_v2", num_classes=90),
    _t("v3_table6", "SSDLite V3", "ssdlite", 137, 320, backbone="mobilenet_v3_large", num_classes=90),
    _t("v3_table6", "SSDLite V3 (reduced tail)", "ssdlite", 119, 320, backbone="mobilenet_v3_large",
       num_classes=90, reduced_tail=True),
    _t("v3_table6", "SSDLite V2 0.35", "ssdlite", 66, 320, backbone="mobilenet_v2", width=0.35, num_classes=90),
    _t("v3_table6", "SSDLite V3-Small", "ssdlite", 52, 320, backbone="mobilenet_v3_small", num_classes=90),
    _t("v3_table6", "SSDLite V3-Small (reduced tail)", "ssdlite", 43, 320, backbone="mobilenet_v3_small",
       num_classes=90, reduced_tail=True),
)
GROUPS = tuple(dict.fromkeys(t.group for t in TIMED))
#: The deployment files timed: float32 and full-int8 TFLite (LiteRT, XNNPACK) and their ONNX
#: conversions (onnxruntime), all single-thread.
TIMED_FORMATS = ("float32", "int8", "onnx", "onnx_int8")
#: What runs by default: V3 Table 3's orderings (Large vs Small vs V2), short enough here.
DEFAULT_GROUPS = ("v3_table3",)


def separate_ops_hard_swish(x):
    """h-swish as the unoptimized graph computes it (V3 Table 5's "no-opt" column): the same
    function, x * hard_sigmoid(x), written so that TFLite keeps MUL/ADD/MINIMUM/MAXIMUM."""
    import jax.numpy as jnp

    return x * jnp.minimum(jnp.maximum(x * (1.0 / 6.0) + 0.5, 0.0), 1.0)


@contextlib.contextmanager
def hard_swish_as_separate_ops(active: bool) -> Iterator[None]:
    """While active, every layer's 'hard_swish' (looked up by name) is `separate_ops_hard_swish`."""
    from mobilenet_jax import layers

    original = layers.ACTIVATIONS["hard_swish"]
    if active:
        layers.ACTIVATIONS["hard_swish"] = separate_ops_hard_swish
    try:
        yield
    finally:
        layers.ACTIVATIONS["hard_swish"] = original


def measure(timed: Timed, *, image_size: Optional[int], formats: Sequence[str], runs: int, warmup: int,
            sessions: int, representative_count: int) -> dict[str, Any]:
    """Exports one network and times each format: {"madds", "float32": {...}, "int8": {...}, ...}."""
    from mobilenet_jax import export as ex
    from mobilenet_jax.latency import file_latency
    from mobilenet_jax.sizes import model_size

    size = image_size or timed.resolution
    with hard_swish_as_separate_ops(timed.separate_hswish), tempfile.TemporaryDirectory() as tmp:
        exportable = ex.fresh(timed.model, image_size=size, **timed.fields)
        madds = model_size(exportable.model, size).madds
        representative = ex.representative_images(exportable.config, max(representative_count, 1), size)
        row: dict[str, Any] = {"group": timed.group, "label": timed.label, "model": timed.model,
                               "fields": timed.fields, "resolution": size, "madds": madds,
                               "paper_ms": timed.paper_ms, "reference": timed.reference,
                               "separate_hswish": timed.separate_hswish}
        written: dict[str, Path] = {}
        for fmt in formats:
            spec = ex.FORMATS[fmt]
            path = Path(tmp) / spec.file_name
            try:
                spec.write(exportable, path, representative if spec.calibrated else None, written)
            except ex.ExportError as e:  # a format that cannot express this network: a gap in the table
                row[fmt] = {"unavailable": str(e)}
                continue
            written[fmt] = path
            row[fmt] = {**file_latency(path, runs=runs, warmup=warmup, sessions=sessions),
                        "bytes": path.stat().st_size, "ops": spec.ops(path)}
    return row


def add_ratios(rows: list[dict], formats: Sequence[str]) -> None:
    """Each row's latency over its group's reference, ours (per format) and the paper's."""
    for row in rows:
        ref = next((r for r in rows if r["group"] == row["group"] and r["reference"]), None)
        if ref is None:
            continue
        for fmt in formats:
            if "median_ms" in row[fmt] and "median_ms" in ref[fmt]:
                row[fmt]["ratio"] = row[fmt]["median_ms"] / ref[fmt]["median_ms"]
        row["paper_ratio"] = (row["paper_ms"] / ref["paper_ms"]) if row["paper_ms"] and ref["paper_ms"] else None
        row["madds_ratio"] = row["madds"] / ref["madds"]


def format_table(rows: list[dict], formats: Sequence[str]) -> str:
    header = ["group", "network", "res", "MAdds", *[f"{f} ms (p90)" for f in formats],
              *[f"{f} ratio" for f in formats], "paper ms", "paper ratio", "MAdds ratio"]
    lines = [header]
    for r in rows:
        def num(x, spec):
            return "-" if x is None else format(x, spec)

        lines.append([
            r["group"], r["label"], str(r["resolution"]), f"{r['madds'] / 1e6:,.1f}M",
            *[f"{r[f]['median_ms']:.2f} ({r[f]['p90_ms']:.2f})" if "median_ms" in r[f] else "-" for f in formats],
            *[num(r[f].get("ratio"), ".2f") for f in formats],
            num(r["paper_ms"], "g"), num(r.get("paper_ratio"), ".2f"), num(r.get("madds_ratio"), ".2f"),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    import jax
    import tensorflow as tf
    from importlib.metadata import version

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "tensorflow": tf.__version__, "ai_edge_litert": version("ai-edge-litert"),
            "onnxruntime": version("onnxruntime"),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS),
                        help=f"any of {list(GROUPS)}, or all (default: {' '.join(DEFAULT_GROUPS)})")
    parser.add_argument("--image-size", type=int, default=None,
                        help="override every network's resolution (default: the paper's, 224 / SSDLite 320)")
    parser.add_argument("--formats", nargs="+", default=["float32", "int8"], choices=TIMED_FORMATS,
                        help="TFLite through LiteRT (the papers' runtime) and ONNX through onnxruntime "
                             "(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=50, help="timed invocations per session")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=1, help="repeated timing sessions (samples for statistics)")
    parser.add_argument("--representative-count", type=int, default=32, help="int8 calibration images")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON result")
    args = parser.parse_args(argv)
    groups = list(GROUPS) if args.groups == ["all"] else args.groups
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise UsageError(f"unknown group(s) {unknown}; known: {list(GROUPS)} or all")
    if args.runs < 1 or args.warmup < 0 or args.sessions < 1:
        raise UsageError("--runs and --sessions must be >= 1, --warmup >= 0")
    rows = []
    for timed in (t for t in TIMED if t.group in groups):
        print(f"{timed.group}: {timed.label} ...", file=sys.stderr, flush=True)
        rows.append(measure(timed, image_size=args.image_size, formats=args.formats, runs=args.runs,
                            warmup=args.warmup, sessions=args.sessions,
                            representative_count=args.representative_count))
    add_ratios(rows, args.formats)
    print(format_table(rows, args.formats))
    result = {"command": " ".join(["python -m benchmarks.latency", *(argv if argv is not None else sys.argv[1:])]),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "num_threads": 1, "batch": 1, "machine": machine(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"latency-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    cli.main_of(main)
