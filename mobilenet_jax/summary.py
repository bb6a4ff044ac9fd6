"""Size table of every model and variant the papers list, counted from the models.

    python -m mobilenet_jax.summary            # table, our counts beside the papers'
    python -m mobilenet_jax.summary --json     # JSON list, one object per variant
    python -m mobilenet_jax.summary --model mobilenet_v3_small --latency   # + LiteRT latency

Columns: trainable parameters (kernels, biases, BN scale/offset), BatchNorm statistics,
multiply-adds (see `mobilenet_jax.sizes`), and the paper's figures where the paper gives
them (V1 Tables 4-9, V2 Table 4 / Sec. 4, V3 Table 3, Xception Table 3). `--latency` adds
each variant's float32 latency: exported to TFLite and timed single-thread, batch 1 through
LiteRT (`mobilenet_jax.latency`: median ms on one pinned core of this machine; each variant is
converted, so combine it with --model).

Detectors (SSDLite at 320x320, `mobilenet_jax.detection`): V2 Table 6 and V3 Table 6. The
class count that reproduces each paper's parameters differs: the V2 paper's SSDLite has 80
COCO classes + background (its Table 5 counts the prediction layers "with 80 classes"; ours
are 2.10M there too), while the V3 paper's rows fit the TF object detection API's 90 COCO
category ids + background (torchvision's 91 logits as well). The papers' counts leave out
BatchNorm's scale and offset; ours include them (the BN stats column is twice that number).

Segmentation (`mobilenet_jax.segmentation`, at torchvision's 520x520): LR-ASPP (V3 Sec. 6.4)
and Mobile DeepLabv3 (V2 Sec. 6.3). Neither paper's table is transcribed (docs/papers.md,
"Not transcribed"), so these rows have no paper column; the torchvision configurations equal
torchvision 0.29.1's counts (docs/papers.md, "torchvision reference sizes").
"""
from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple, Optional

from mobilenet_jax import cli
from mobilenet_jax.models.registry import create_model
from mobilenet_jax.sizes import model_size

M = 1_000_000


class Variant(NamedTuple):
    model: str
    overrides: dict[str, Any]
    resolution: int
    variant: str
    paper_params: Optional[int]
    paper_madds: Optional[int]
    source: str


def _v1(width: float, res: int, params: float, madds: float, source: str, variant: str = "paper", **kw) -> Variant:
    return Variant("mobilenet_v1", dict(width=width, **kw), res, variant, round(params * M), round(madds * M), source)


def _ssd(backbone: str, width: float, classes: int, params: float, madds: float, source: str,
         reduced_tail: bool = False) -> Variant:
    overrides = dict(backbone=backbone, width=width, num_classes=classes)
    if reduced_tail:
        overrides["reduced_tail"] = True
    name = backbone.replace("mobilenet_", "") + (" halved tail" if reduced_tail else "")
    return Variant("ssdlite", overrides, 320, f"{name}, {classes}+1 cls", round(params * M),
                   round(madds * M), source)


def _seg(model: str, variant: str, source: str, **overrides) -> Variant:
    return Variant(model, overrides, 520, variant, None, None, source)


VARIANTS: tuple[Variant, ...] = (
    # MobileNets (V1): Tables 6, 7 (width, resolution), 4 (full conv), 5 (shallow), 9.
    _v1(1.0, 224, 4.2, 569, "V1 Table 6"),
    _v1(0.75, 224, 2.6, 325, "V1 Table 6"),
    _v1(0.5, 224, 1.3, 149, "V1 Table 6"),
    _v1(0.25, 224, 0.5, 41, "V1 Table 6"),
    _v1(1.0, 192, 4.2, 418, "V1 Table 7"),
    _v1(1.0, 160, 4.2, 290, "V1 Table 7"),
    _v1(1.0, 128, 4.2, 186, "V1 Table 7"),
    _v1(0.5, 160, 1.32, 76, "V1 Table 9"),
    _v1(1.0, 224, 29.3, 4866, "V1 Table 4", variant="full conv", conv_type="full"),
    _v1(1.0, 224, 2.9, 307, "V1 Table 5", variant="shallow", shallow=True),
    # MobileNetV2: Table 4 and Sec. 4; 0.35 from the V3 paper's Table 3.
    Variant("mobilenet_v2", dict(width=1.0), 224, "paper", round(3.4 * M), 300 * M, "V2 Table 4"),
    Variant("mobilenet_v2", dict(width=1.4), 224, "paper", round(6.9 * M), 585 * M, "V2 Table 4"),
    Variant("mobilenet_v2", dict(width=1.3), 224, "paper", None, None, "-"),
    Variant("mobilenet_v2", dict(width=0.75), 224, "paper", None, None, "-"),
    Variant("mobilenet_v2", dict(width=0.5), 224, "paper", None, None, "-"),
    Variant("mobilenet_v2", dict(width=0.35), 224, "paper", round(1.6 * M), round(59.2 * M), "V3 Table 3"),
    Variant("mobilenet_v2", dict(width=1.0), 96, "paper", None, None, "-"),
    Variant("mobilenet_v2", dict(bottleneck_activation="relu6"), 224, "relu6 bottleneck", None, None, "V2 Fig. 6a"),
    Variant("mobilenet_v2", dict(width=1.0, shortcut="none"), 224, "no shortcut", None, None, "V2 Fig. 6b"),
    # MobileNetV3: Table 3 (latest arXiv version) and Table 5 ablations.
    Variant("mobilenet_v3_large", dict(width=1.0), 224, "paper", round(5.4 * M), 219 * M, "V3 Table 3"),
    Variant("mobilenet_v3_large", dict(width=0.75), 224, "paper", round(4.0 * M), 155 * M, "V3 Table 3"),
    Variant("mobilenet_v3_large", dict(width=1.0, minimalistic=True), 224, "minimalistic", None, None, "-"),
    Variant("mobilenet_v3_large", dict(width=0.75, minimalistic=True), 224, "minimalistic", None, None, "-"),
    Variant("mobilenet_v3_large", dict(hswish_from=None), 224, "ReLU everywhere", None, None, "V3 Table 5"),
    Variant("mobilenet_v3_large", dict(hswish_from=16), 224, "h-swish@16", None, None, "V3 Table 5"),
    Variant("mobilenet_v3_large", dict(hswish_from=112), 224, "h-swish@112", None, None, "V3 Table 5"),
    Variant("mobilenet_v3_large", dict(squeeze_excite=False), 224, "no SE", None, None, "-"),
    Variant("mobilenet_v3_small", dict(width=1.0), 224, "paper", round(2.5 * M), 56 * M, "V3 Table 3"),
    Variant("mobilenet_v3_small", dict(width=0.75), 224, "paper", round(2.0 * M), 44 * M, "V3 Table 3"),
    Variant("mobilenet_v3_small", dict(width=1.0, minimalistic=True), 224, "minimalistic", None, None, "-"),
    Variant("mobilenet_v3_small", dict(width=0.75, minimalistic=True), 224, "minimalistic", None, None, "-"),
    # Xception: Table 3 (params only); Figs. 9, 10 ablations.
    Variant("xception", {}, 299, "paper", 22_855_952, None, "Xception Table 3"),
    Variant("xception", dict(residual=False), 299, "no residual", None, None, "Xception Fig. 9"),
    Variant("xception", dict(separable_activation="relu"), 299, "ReLU in separable", None, None, "Xception Fig. 10"),
    # SSDLite detectors at 320: V2 Table 6 (80 classes), V3 Table 6 (90 classes; † = reduced_tail).
    _ssd("mobilenet_v2", 1.0, 80, 4.3, 800, "V2 Table 6"),
    _ssd("mobilenet_v1", 1.0, 90, 5.1, 1300, "V3 Table 6"),
    _ssd("mobilenet_v2", 1.0, 90, 4.3, 800, "V3 Table 6"),
    _ssd("mobilenet_v3_large", 1.0, 90, 4.97, 620, "V3 Table 6"),
    _ssd("mobilenet_v3_large", 1.0, 90, 3.22, 510, "V3 Table 6", reduced_tail=True),
    _ssd("mobilenet_v2", 0.35, 90, 0.93, 160, "V3 Table 6"),
    _ssd("mobilenet_v2", 0.5, 90, 1.54, 270, "V3 Table 6"),
    _ssd("mobilenet_v3_small", 1.0, 90, 2.49, 210, "V3 Table 6"),
    _ssd("mobilenet_v3_small", 1.0, 90, 1.77, 160, "V3 Table 6", reduced_tail=True),
    # Segmentation at 520, 21 classes: V3 Sec. 6.4 (LR-ASPP), V2 Sec. 6.3 (MNet V2* = no 1280 conv).
    _seg("lraspp", "V3-L halved tail OS16", "V3 Sec. 6.4"),
    _seg("lraspp", "V3-L OS16 (torchvision)", "V3 Sec. 6.4", reduced_tail=False),
    _seg("lraspp", "V3-S halved tail OS16", "V3 Sec. 6.4", backbone="mobilenet_v3_small"),
    _seg("deeplabv3", "V3-L ASPP OS16 (torchvision)", "-"),
    _seg("deeplabv3", "V2* R-ASPP OS16", "V2 Sec. 6.3", backbone="mobilenet_v2", aspp="reduced",
         head_conv=False, last_conv=False),
    _seg("deeplabv3", "V2* R-ASPP OS8", "V2 Sec. 6.3", backbone="mobilenet_v2", aspp="reduced",
         head_conv=False, last_conv=False, output_stride=8),
    _seg("deeplabv3", "V2* ASPP OS16", "V2 Sec. 6.3", backbone="mobilenet_v2", head_conv=False,
         last_conv=False, atrous_rates=(6, 12, 18)),
)


def measure(v: Variant) -> dict[str, Any]:
    model = create_model(v.model, **v.overrides)
    size = model_size(model, v.resolution)
    return dict(
        model=v.model,
        width=model.width,
        resolution=v.resolution,
        variant=v.variant,
        params=size.params,
        batch_stats=size.batch_stats,
        madds=size.madds,
        paper_params=v.paper_params,
        paper_madds=v.paper_madds,
        source=v.source,
    )


def measure_latency(v: Variant, runs: int = 50) -> float:
    """Median float32 ms of the variant, single thread, batch 1 (`mobilenet_jax.latency`)."""
    from mobilenet_jax import export
    from mobilenet_jax.latency import tflite_latency

    exportable = export.fresh(v.model, image_size=v.resolution, **v.overrides)
    return tflite_latency(export.convert_tflite(exportable, "float32"), runs=runs)["median_ms"]


def format_table(rows: list[dict[str, Any]]) -> str:
    def millions(n: Optional[int]) -> str:
        return "-" if n is None else f"{n / M:,.2f}M"

    def ratio(ours: int, paper: Optional[int]) -> str:
        return "" if paper is None else f"{100 * (ours - paper) / paper:+.1f}%"

    latency = any("latency_ms" in r for r in rows)
    header = ("model", "width", "res", "variant", "params", "paper", "diff", "BN stats",
              "MAdds", "paper", "diff", "source") + (("float32 ms",) if latency else ())
    lines = [header]
    for r in rows:
        lines.append((
            r["model"], f"{r['width']:g}", str(r["resolution"]), r["variant"],
            f"{r['params']:,}", millions(r["paper_params"]), ratio(r["params"], r["paper_params"]),
            f"{r['batch_stats']:,}", millions(r["madds"]), millions(r["paper_madds"]),
            ratio(r["madds"], r["paper_madds"]), r["source"],
        ) + ((f"{r['latency_ms']:.2f}",) if latency else ()))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i in (0, 3, 11) else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m mobilenet_jax.summary", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--model", help="only this model (a registry name)")
    parser.add_argument("--latency", action="store_true",
                        help="add single-thread batch-1 LiteRT float32 latency (converts every listed variant)")
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if args.model in (None, v.model)]
    if not variants:
        parser.error(f"no variants for model {args.model!r}")
    rows = [measure(v) for v in variants]
    if args.latency:
        for v, row in zip(variants, rows):
            row["latency_ms"] = measure_latency(v)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows))
        print("\nparams: kernels, biases, BN scale/offset. MAdds: convs incl. depthwise, SE 1x1s, "
              "post-pool convs and classifier; one image." + (" float32 ms: LiteRT, XNNPACK, one thread, "
                                                             "batch 1, median on one core of this machine."
                                                             if args.latency else ""))
    return 0


if __name__ == "__main__":
    cli.main_of(main)
