"""Where a train step's time goes: kernel time by category and by layer, from a profiler trace.

    python -m benchmarks.profile --model mobilenet_v2                      # GPU sizes (b256, 224, bf16)
    python -m benchmarks.profile --preset cpu --model mobilenet_v2 --width 0.35
    python -m benchmarks.profile --model mobilenet_v2 --depthwise-impl shifted

Traces `--steps` calls of the trainer's own pmapped train step (benchmarks/throughput.py's
`build_step`: RMSProp, L2, EMA, cross-replica BatchNorm) with `jax.profiler`, reads the
Perfetto trace and joins every kernel to the instruction of the compiled XLA program that
launched it. From that instruction's opcodes it puts the kernel in one category --
convolution/matmul, reduction, elementwise, copy, collective, other -- and from its
`op_name` metadata (flax names each module's scope: `blocks_3/depthwise/bn`) in one layer of
the model. Prints the time per category, per block and the top kernels with their layers,
and writes the same as JSON under benchmarks/results/. On a GPU, XLA's command buffers
(which would bundle many kernels under one name) are switched off for the trace.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from benchmarks.throughput import MODELS, RESULTS_DIR, build_step, environment, resolution_for

from mobilenet_jax import cli

PRESETS = {
    "gpu": dict(batch_size=256, resolution=224, dtype="bfloat16", steps=5),
    "cpu": dict(batch_size=8, resolution=64, dtype="float32", steps=2),
}
CATEGORIES = ("convolution/matmul", "reduction", "elementwise", "copy", "collective", "other")
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_COPIES = ("copy", "transpose", "copy-start", "copy-done", "dynamic-update-slice", "bitcast")
#: Wrappers in op_name paths that are transformations, not modules (jvp(...), transpose(...)).
_WRAPPER = re.compile(r"^[\w.]+\(.*\)$")


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One instruction of the optimized HLO: its opcode, the opcodes it fuses, its op_name."""

    name: str
    opcode: str
    fused_opcodes: tuple[str, ...]
    op_name: str
    custom_call_target: str = ""


def _normalise(name: str) -> str:
    """Kernel names are HLO names with '.' and '-' made '_' (cuDNN's carry the HLO op)."""
    return re.sub(r"[.\-]", "_", name)


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\S+.*?\s([\w\-]+)\((.*)$")


def parse_hlo(text: str) -> dict[str, Instruction]:
    """Instructions of an optimized HLO module by normalised name, each fusion with the
    opcodes of the computation it calls (nested fusions flattened)."""
    computations: dict[str, list[tuple[str, str, str, str, str]]] = {}
    current = None
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header and not line.startswith(" "):
            current = header.group(1)
            computations[current] = []
            continue
        m = _INSTRUCTION.match(line)
        if m is None or current is None:
            continue
        name, opcode, rest = m.groups()
        calls = re.search(r"calls=%?([\w.\-]+)", rest)
        op_name = re.search(r'op_name="([^"]*)"', rest)
        target = re.search(r'custom_call_target="([^"]*)"', rest)
        computations[current].append((name, opcode, calls.group(1) if calls else "",
                                      op_name.group(1) if op_name else "", target.group(1) if target else ""))

    def opcodes(computation: str, seen: frozenset = frozenset()) -> list[str]:
        out = []
        for _, opcode, calls, _, _ in computations.get(computation, []):
            out.append(opcode)
            if calls and calls not in seen:
                out += opcodes(calls, seen | {calls})
        return out

    table = {}
    for instructions in computations.values():
        for name, opcode, calls, op_name, target in instructions:
            fused = tuple(opcodes(calls)) if opcode == "fusion" and calls else ()
            if not op_name and fused:  # a fusion without metadata: its ops' names
                names = [n for _, _, _, n, _ in computations.get(calls, []) if n]
                op_name = collections.Counter(names).most_common(1)[0][0] if names else ""
            table[_normalise(name)] = Instruction(name, opcode, fused, op_name, target)
    return table


def category(inst: Optional[Instruction], kernel: str = "") -> str:
    """The kernel category of an instruction (or, unmatched, of a kernel name)."""
    if inst is None:
        low = kernel.lower()
        if any(k in low for k in ("conv", "gemm", "xmma", "cudnn", "cutlass", "nvjet", "matmul")):
            return "convolution/matmul"
        if "reduce" in low:
            return "reduction"
        if "memcpy" in low or "copy" in low:
            return "copy"
        return "other"
    ops = set(inst.fused_opcodes) | {inst.opcode}
    target = inst.custom_call_target.lower()
    if ops & {"convolution", "dot"} or any(k in target for k in ("conv", "gemm", "matmul", "cublas")):
        return "convolution/matmul"
    if ops & set(_COLLECTIVES) or any(inst.opcode.startswith(c) for c in _COLLECTIVES):
        return "collective"
    if ops & {"reduce", "reduce-window", "select-and-scatter", "scatter"}:
        return "reduction"
    if inst.opcode in _COPIES or (inst.fused_opcodes and set(inst.fused_opcodes) <= set(_COPIES) | {"parameter"}):
        return "copy"
    if inst.opcode in ("fusion", "add", "multiply", "subtract", "divide", "maximum", "minimum", "select",
                       "convert", "exponential", "log", "rsqrt", "negate", "compare", "broadcast", "pad",
                       "slice", "concatenate", "reshape", "clamp", "tanh"):
        return "elementwise"
    return "other"


def module_paths(params: Any) -> set[str]:
    """Every module path of a parameter tree ('blocks_3', 'blocks_3/depthwise', ...)."""
    import jax

    paths = set()
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", k)) for k in path][:-1]  # drop the leaf ('kernel')
        for i in range(1, len(keys) + 1):
            paths.add("/".join(keys[:i]))
    return paths


def layer_of(op_name: str, paths: set[str]) -> str:
    """The deepest module path of the model named in an op_name ('' when none is)."""
    segments = [s for s in op_name.split("/") if not _WRAPPER.match(s)]
    best = ""
    for start in range(len(segments)):
        for end in range(start + 1, len(segments) + 1):
            candidate = "/".join(segments[start:end])
            if candidate in paths and len(candidate) > len(best):
                best = candidate
    return best


def kernel_events(trace_dir: str) -> Iterable[tuple[str, float]]:
    """(kernel or HLO op name, microseconds) of every XLA kernel in the trace: the device's
    stream events on a GPU/TPU, the thunk events that carry an `hlo_op` on the CPU."""
    files = glob.glob(os.path.join(trace_dir, "**", "*perfetto_trace.json.gz"), recursive=True)
    if not files:
        raise RuntimeError(f"the profiler wrote no Perfetto trace under {trace_dir}")
    data = json.load(gzip.open(files[0]))
    events = data["traceEvents"] if isinstance(data, dict) else data
    pid_names = {e["pid"]: e["args"]["name"] for e in events
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    device_pids = {p for p, n in pid_names.items() if "/device:" in n}
    for e in events:
        if e.get("ph") != "X" or e.get("name", "").startswith("end: "):
            continue
        args = e.get("args", {})
        if device_pids:
            if e.get("pid") in device_pids:
                yield args.get("hlo_op") or e["name"], float(e.get("dur", 0))
        elif "hlo_op" in args:
            yield args["hlo_op"], float(e.get("dur", 0))


def profile(model: str, batch_size: int, resolution: int, dtype: str, steps: int, width: float = 1.0,
            depthwise_impl: str = "auto", top: int = 25) -> dict:
    import jax

    train, _, state, batch = build_step(model, batch_size, resolution, dtype, width, depthwise_impl)
    train = train.lower(state, batch).compile()  # the program that runs is the one parsed
    program = parse_hlo(train.as_text())
    paths = module_paths(state.params)
    state, metrics = train(state, batch)
    jax.block_until_ready(metrics)  # compiled and warm
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0
    options.host_tracer_level = 2
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True, profiler_options=options):
            for _ in range(steps):
                state, metrics = train(state, batch)
            jax.block_until_ready(metrics)
        events = list(kernel_events(trace_dir))
    by_kernel: dict[str, float] = collections.Counter()
    for name, us in events:
        by_kernel[name] += us
    by_category: dict[str, float] = collections.Counter()
    by_block: dict[str, float] = collections.Counter()
    kernels = []
    for name, us in sorted(by_kernel.items(), key=lambda kv: -kv[1]):
        inst = program.get(_normalise(name))
        layer = layer_of(inst.op_name, paths) if inst else ""
        cat = category(inst, name)
        ms = us / steps / 1e3
        by_category[cat] += ms
        by_block[layer.split("/")[0] or "(optimizer, EMA, loss)"] += ms
        kernels.append({"kernel": name, "ms_per_step": ms, "category": cat, "layer": layer,
                        "matched_hlo": inst is not None})
    total = sum(by_category.values())
    return {
        "model": model, "batch_size": batch_size, "resolution": resolution, "dtype": dtype, "width": width,
        "depthwise_impl": depthwise_impl, "steps_traced": steps, "kernel_ms_per_step": total,
        "by_category_ms_per_step": {c: by_category.get(c, 0.0) for c in CATEGORIES},
        "by_block_ms_per_step": dict(sorted(by_block.items(), key=lambda kv: -kv[1])),
        "kernels_matched_to_hlo": sum(k["matched_hlo"] for k in kernels) / max(len(kernels), 1),
        "top_kernels": kernels[:top],
    }


def lowered_passes(model: str, platform: str, batch_size: int = 8, resolution: int = 224,
                   dtype: str = "bfloat16", width: float = 1.0, depthwise_impl: str = "auto") -> dict:
    """A GPU-free proxy for passes over the activations: the reductions over rank-4 tensors,
    and the grouped convolutions, in the model's loss gradient lowered (not compiled) for
    `platform` ('cuda', 'tpu', 'cpu'), as the forms `lax.platform_dependent` picks there."""
    import jax
    import jax.numpy as jnp
    from jax import export

    from mobilenet_jax import create_model

    net = create_model(model, num_classes=1000, dtype=jnp.dtype(dtype), width=width, dropout_rate=0.0,
                       depthwise_impl=depthwise_impl)
    x = jax.ShapeDtypeStruct((batch_size, resolution, resolution, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: net.init(jax.random.key(0), x, train=False), x)

    def loss(params, batch_stats, x):
        y, updates = net.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                               mutable=["batch_stats"])
        return jnp.sum(y.astype(jnp.float32)), updates

    grad = jax.jit(jax.grad(loss, has_aux=True))
    text = export.export(grad, platforms=[platform])(variables["params"], variables["batch_stats"], x).mlir_module()
    reduced = re.findall(r"stablehlo.reduce\((%[\w#]+) init[^\n]*?: \((tensor<(?:\d+x){4}\w+>)", text)
    groups = [int(g) for g in re.findall(r"feature_group_count = (\d+)", text)]
    return {"model": model, "platform": platform, "activation_reductions": len(reduced),
            "distinct_reduced_tensors": len({name for name, _ in reduced}),
            "grouped_convolutions": sum(g > 1 for g in groups)}


def format_report(result: dict) -> str:
    total = result["kernel_ms_per_step"] or 1.0
    lines = [f"{result['model']} b{result['batch_size']} {result['resolution']}px {result['dtype']} "
             f"(depthwise {result['depthwise_impl']}): {result['kernel_ms_per_step']:.2f} ms of kernels per step",
             "", f"{'category':<22}{'ms/step':>10}{'share':>8}"]
    for c, ms in result["by_category_ms_per_step"].items():
        lines.append(f"{c:<22}{ms:>10.3f}{ms / total:>8.1%}")
    lines += ["", f"{'block':<26}{'ms/step':>10}"]
    for b, ms in list(result["by_block_ms_per_step"].items())[:10]:
        lines.append(f"{b:<26}{ms:>10.3f}")
    lines += ["", f"{'kernel':<44}{'ms/step':>9}  {'category':<19}layer"]
    for k in result["top_kernels"]:
        lines.append(f"{k['kernel'][:43]:<44}{k['ms_per_step']:>9.3f}  {k['category']:<19}{k['layer']}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=MODELS)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--resolution", type=int, help="input side (Xception gets x299/224)")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"])
    parser.add_argument("--steps", type=int, help="train steps traced")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--depthwise-impl", default="auto", choices=["auto", "shifted", "grouped"])
    parser.add_argument("--top", type=int, default=25, help="kernels listed")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON result")
    parser.add_argument("--lowered-for", metavar="PLATFORM", choices=["cpu", "cuda", "rocm", "tpu"],
                        help="no trace: count the reductions over activations and grouped convolutions "
                             "of the loss gradient lowered for PLATFORM (no such device needed)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.lowered_for:
        counts = lowered_passes(args.model, args.lowered_for, args.batch_size, args.resolution, args.dtype,
                                args.width, args.depthwise_impl)
        print(json.dumps(counts))
        return 0
    result = profile(args.model, args.batch_size, resolution_for(args.model, args.resolution), args.dtype,
                     args.steps, args.width, args.depthwise_impl, args.top)
    env = environment(argv)
    env["command"] = " ".join(["python -m benchmarks.profile", *argv])
    result = {"environment": env, **result}
    print(format_report(result))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    device = env["device"].replace(" ", "_").lower()
    path = args.out / f"profile-{device}-{args.model}-{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    # One kernel, one name: XLA:GPU's command buffers would report many kernels as one. Set
    # before JAX starts its backend (only the command line can).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_enable_command_buffer=").strip()
    cli.main_of(main)
