"""``make bench``: runs every benchmark in ``bench/`` and writes ``docs/benchmarks.md`` plus the raw JSON.

Each benchmark prints one JSON object; this collects them into one table of figure, baseline
(or peer) run in the same process, and ratio, so a reader sees every target in one place.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (module, default arguments)
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "index": ("bench.index", ["--sizes", "50000,200000,800000", "--dim", "512", "--json", "--no-peer"]),
    "sampler": ("bench.sampler", ["--json"]),
    "encoder": ("bench.encoder", ["--json", "--skip-sampler"]),
    # The CPU fast path against eager float32, side by side on the same batches (offline only).
    "encoder_fastpath": ("bench.encoder", ["--json", "--skip-sampler", "--skip-served", "--device", "cpu",
                                           "--runtime", "onnx-int8"]),
    "gateway": ("bench.gateway", ["--json"]),
    "ingest": ("bench.ingest", ["--json"]),
    "web": ("bench.web", ["--json"]),
    "reconcile": ("bench.reconcile", ["--json"]),
    "catchup": ("bench.catchup", ["--json"]),
}

# (benchmark, figure, baseline figure or None, ratio figure or None, target text)
ROWS = [
    # Index figures are those of the largest size; every size is in the table below the main one.
    ("index", "recall_at_10", None, None, ">= 0.95"),
    ("index", "qps", "exact_qps", "speedup_vs_exact", "speedup >= 30"),
    ("index", "qps_ratio_4x", None, None, ">= 0.5 (QPS at 4x the clips)"),
    ("index", "bytes_per_raw_byte", None, None, "<= 2 at every size"),
    ("index", "startup_seconds", None, None, "(open the shard to SERVING)"),
    # The Annoy engine's run, before IVF became the default; kept in benchmarks.json, not rerun by make bench.
    ("index_annoy", "qps", "exact_qps", "speedup_vs_exact", ""),
    ("index_annoy", "qps_ratio_4x", None, None, ""),
    # Sealed every 50,000 rows, merged in tiers or not (bench.index --segment-rows --merge-factor); not rerun.
    ("index_tiers", "merged_qps", "unmerged_qps", "qps_ratio", "(200,000 clips: one merged segment vs four)"),
    ("index_tiers", "merged_recall_at_10", "unmerged_recall_at_10", None, ""),
    ("sampler", "sampler_clips_per_s", "baseline_clips_per_s", "speedup", "(decode-every-frame baseline)"),
    ("sampler", "frames_decoded_per_kept", "baseline_frames_decoded_per_kept", None, "lower is better"),
    ("encoder", "batched_images_per_s", "unbatched_images_per_s", "batching_speedup", "GPU: >= 5"),
    ("encoder", "batched_images_per_s", "offline_images_per_s", "batching_efficiency", "CPU: >= 0.85"),
    ("encoder_fastpath", "fast_path_images_per_s", "fast_path_eager_images_per_s", "fast_path_speedup",
     "onnx-int8: >= 2"),
    ("encoder_fastpath", "fast_path_min_cosine", None, None, ">= 0.995"),
    # Run on a lent H200 (bench.encoder --device cuda); kept in benchmarks.json, not rerun by make bench.
    ("encoder_gpu_h200", "batched_images_per_s", "unbatched_images_per_s", "batching_speedup", "GPU: >= 5"),
    ("encoder_gpu_h200", "batched_images_per_s", "offline_images_per_s", "batching_efficiency", ""),
    ("gateway", "qps", None, None, ""),
    ("gateway", "p99_ms", "p50_ms", "p99_over_p50", "< 4"),
    ("gateway", "errors", None, None, "= 0"),
    ("gateway", "hit_p50_ms", "miss_p50_ms", "cache_hit_speedup", ""),
    ("gateway", "fanout_overhead_ms", None, None, ""),
    ("ingest", "sample_realtime_factor", "ffmpeg_decode_realtime_factor", "sample_vs_ffmpeg", ">= 0.8"),
    ("ingest", "end_to_end_realtime_factor_tiny", None, None, ""),
    ("ingest", "end_to_end_realtime_factor_vitb32", None, None, ""),
    ("web", "http_p50_ms", "grpc_p50_ms", "overhead_p50_ms", "overhead <= 5 ms at 16 clients"),
    ("web", "http_qps", "grpc_qps", None, ""),
    ("web", "web_cpu_ms_per_request", None, None, "(the web process's CPU per search)"),
    ("web", "extra_cpu_ms_per_request", None, None, "(all processes, HTTP minus gRPC; x 16 / cores ~ overhead)"),
    ("web", "errors", None, None, "= 0"),
    ("reconcile", "walk_peak_mib", "inventory_peak_mib", "memory_ratio", "(a migration pass's driver memory)"),
    ("reconcile", "walk_seconds", "inventory_seconds", "time_ratio", ""),
    ("catchup", "speedup", None, None, "(full scan s / range digests s, a replica that missed 100 of 100,000)"),
    ("catchup", "scanned_ratio", None, None, "(peer clips read: full scan / range digests)"),
    ("catchup", "speedup_missed_nothing", None, None, "(the same, a replica that missed nothing)"),
]


def _lookup(result: dict, key: str | None):
    if key is None:
        return None
    if key in result:
        return result[key]
    for case in result.get("cases", [])[-1:]:
        if key in case:
            return case[key]
    return None


# Per-size columns of a benchmark that reports ``cases`` (bench.index --sizes).
CASE_COLUMNS = ["n", "engine", "segments", "search_k", "recall_at_10", "qps", "exact_qps", "speedup_vs_exact",
                "bytes_per_raw_byte", "index_bytes", "store_bytes", "build_seconds", "startup_seconds",
                "startup_rss_bytes", "peer_qps", "peer_index_bytes"]


def render_cases(name: str, result: dict) -> list[str]:
    cases = result.get("cases", [])
    if len(cases) < 2 or not all("n" in case for case in cases):  # only benchmarks run at several sizes
        return []
    columns = [c for c in CASE_COLUMNS if any(c in case for case in cases)]
    note = f" {result['note']}" if result.get("note") else ""
    lines = ["", f"`{name}` at each size (one run).{note}", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(case.get(c, "")) for c in columns) + " |" for case in cases]
    return lines


def run_benchmark(module: str, args: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
    start = proc.stdout.find("{")
    result = json.loads(proc.stdout[start:])
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def render(results: dict[str, dict]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "Raw JSON: `docs/benchmarks.json`.",
        "",
        "| benchmark | figure | value | baseline / peer | value | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench, figure, base, ratio, target in ROWS:
        result = results.get(bench)
        if result is None:
            continue
        if "error" in result:
            lines.append(f"| {bench} | (failed: {result['error']}) | | | | | {target} |")
            continue
        ratio_value = _lookup(result, ratio)
        lines.append(
            f"| {bench} | {figure} | {_lookup(result, figure)} | {base or ''} | "
            f"{'' if base is None else _lookup(result, base)} | "
            f"{'' if ratio_value is None else f'{ratio}={ratio_value}'} | {target} |"
        )
    for name, result in results.items():
        lines += render_cases(name, result)
    for name, result in results.items():
        if result.get("note") and not render_cases(name, result):
            lines += ["", f"`{name}`: {result['note']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHMARKS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHMARKS) if n]
    raw_path = args.out / "benchmarks.json"
    results: dict[str, dict] = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    for name in names:
        module, bench_args = BENCHMARKS[name]
        print(f"running {module} {' '.join(bench_args)} ...", file=sys.stderr, flush=True)
        results[name] = run_benchmark(module, bench_args)
        print(json.dumps(results[name]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    raw_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (args.out / "benchmarks.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
