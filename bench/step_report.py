"""The markdown report and the target check of bench_step.py's results."""

from __future__ import annotations

from typing import Optional

MIB = 2**20


def _fmt(value: Optional[float], spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + suffix


def _mib(value: Optional[int]) -> str:
    return "n/a" if value is None else f"{value / MIB:.2f}"


def _quartiles(value: Optional[list[float]]) -> str:
    """`1.02–1.15`; – where the record has none (not timed, or older than the column)."""
    return "–" if not value else f"{value[0]:.2f}–{value[1]:.2f}"


def _find(rows: list[dict], set_name: str, config: str) -> Optional[dict]:
    return next((r for r in rows if r["set"] == set_name and r["config"] == config), None)


def targets(rows: list[dict], device: str) -> list[dict]:
    """The performance targets, each with its measured value and whether it is met.

    CPU, VGG-16, float32, no momentum: euclidean and hyperbolic (both updates,
    normalised or not) within 1.3× of SGD(foreach=True), metric updates (power's
    included) within 1.1×, and all of them at least 3× faster than the plain
    step. CUDA: within 1.2× of SGD(fused=True) on VGG-16, ≥ 75 % of the copy's
    bandwidth on the large tensor.
    """
    out = []

    def check(what: str, row: Optional[dict], key: str, bound: float, at_most: bool) -> None:
        value = None if row is None else row.get(key)
        met = None if value is None else (value <= bound if at_most else value >= bound)
        out.append({"target": what, "value": value, "bound": bound,
                    "at_most": at_most, "met": met})

    if device == "cpu":
        for name in ("euclidean", "hyperbolic", "power"):
            for update in ("metric", "dual"):
                if name == "power" and update == "dual":
                    continue
                for normalized in ("", " normalized"):
                    label = f"{name} {update}{normalized}"
                    row = _find(rows, "vgg16", label)
                    bound = 1.1 if update == "metric" else 1.3
                    check(f"vgg16 {label}: × SGD foreach", row, "x_sgd_foreach", bound, True)
                    check(f"vgg16 {label}: plain ÷ mirrorflow", row, "plain_speedup", 3.0,
                          False)
    else:
        for label in ("hyperbolic metric normalized", "euclidean metric"):
            check(f"vgg16 {label}: × SGD fused", _find(rows, "vgg16", label), "x_sgd_fused",
                  1.2, True)
            check(f"large {label}: % of copy", _find(rows, "large", label), "pct_copy", 75.0,
                  False)
    return out


#: The malloc setting of a run that kept the C library's defaults (and of records made
#: before bench_step.py recorded the setting).
SYSTEM_MALLOC = "the C library's defaults"


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    device = s["device"]
    where = m.get("gpu") if device == "cuda" else m["cpu"]
    prefetch = f" (prefetching into {m['cpu_prefetch']})" if "cpu_prefetch" in m else ""
    lines = [
        f"Step benchmark on {device}: {where}; {m['cpu_count']} CPUs, "
        f"torch.get_num_threads() = {m['torch_threads']}, CPU capability "
        f"{m['cpu_capability']}{prefetch}; PyTorch {m['torch']}, mirrorflow {m['mirrorflow']}; load "
        f"average {result['load_before']} before, {result['load_after']} after; "
        f"{s['rounds']} interleaved rounds (the plain step: at most 3), median; float32; "
        f"lr 1e-3, momentum 0.9 where on; {s.get('malloc', SYSTEM_MALLOC)}.",
        "",
        f"Command: `{result['command']}` ({result['seconds']:.0f} s, started "
        f"{result['started']})",
        "",
        "Columns: step time of mirrorflow; its ratio to torch.optim.SGD(foreach=True) and "
        "(fused=True) with the same momentum, timed in the same rounds; the middle half "
        "(first to third quartile) of the ratio to SGD(foreach) round by round; the plain-PyTorch "
        "per-tensor step and how many times slower it is; GB/s counting 12 bytes per element "
        "(20 with momentum) and its share of a copy moving as many bytes; peak extra tensor "
        "memory of one step.",
        "",
    ]
    sets = list(dict.fromkeys(r["set"] for r in result["rows"]))
    for set_name in sets:
        rows = [r for r in result["rows"] if r["set"] == set_name]
        first = rows[0]
        sgd_peaks = {k: first["peak_extra_bytes"].get(k) for k in ("sgd_foreach", "sgd_fused")}
        lines += [
            f"**{set_name}**: {first['elements']:,} elements in {first['tensors']} tensors "
            f"({first['model_bytes'] / MIB:.1f} MiB of parameters); copy bandwidth "
            f"{first['copy_gbs']:.1f} GB/s; SGD peak extra memory: foreach "
            f"{_mib(sgd_peaks['sgd_foreach'])} MiB, fused {_mib(sgd_peaks['sgd_fused'])} MiB",
            "",
            "| step | mirrorflow ms | × SGD foreach | rounds' middle half | × SGD fused | "
            "SGD foreach ms | SGD fused ms | plain ms | plain ÷ mirrorflow | GB/s | "
            "% of copy | extra MiB mirrorflow / plain |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            ms, peak = r["ms"], r["peak_extra_bytes"]
            lines.append(
                f"| {r['config']} | {ms['mirrorflow']:.3f} | {_fmt(r['x_sgd_foreach'], '.2f')} | "
                f"{_quartiles(r.get('x_sgd_foreach_quartiles'))} | "
                f"{_fmt(r['x_sgd_fused'], '.2f')} | {_fmt(ms.get('sgd_foreach'), '.3f')} | "
                f"{_fmt(ms.get('sgd_fused'), '.3f')} | {_fmt(ms.get('plain'), '.2f')} | "
                f"{_fmt(r['plain_speedup'], '.1f', '×')} | {r['gbs']:.1f} | "
                f"{r['pct_copy']:.0f} % | {_mib(peak.get('mirrorflow'))} / "
                f"{_mib(peak.get('plain'))} |")
        errors = {k: v for r in rows for k, v in r.get("errors", {}).items()}
        for name, error in errors.items():
            lines.append(f"\n{name} could not be run: {error}")
        lines.append("")
    targets = result.get("targets") or []
    measured = [t for t in targets if t["met"] is not None]
    if measured:
        lines += ["Targets:", "", "| target | measured | bound | met |", "|---|---:|---:|---|"]
        for t in measured:
            sign = "≤" if t["at_most"] else "≥"
            lines.append(f"| {t['target']} | {_fmt(t['value'], '.2f')} | {sign} {t['bound']} | "
                         f"{'yes' if t['met'] else '**no**'} |")
        lines.append("")
    if len(measured) < len(targets):
        lines += [f"{len(targets) - len(measured)} of the {len(targets)} targets not measured "
                  "(their rows were not run).", ""]
    return "\n".join(lines)
