#!/bin/bash
# Every GPU measurement of issue 16 in one run on a lent GPU (the `device` tool), about 7 minutes:
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu/wheels", ".gpu/bin"], timeout_s=560)
# .gpu/ (git-ignored) holds what the device's Python and PATH lack; fill it here first with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --no-deps -d .gpu/wheels \
#       open_clip_torch ftfy wcwidth grpcio==1.85.3 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
#       protobuf==7.36.2 av==18.1.0 pytest==9.2.0 pluggy iniconfig prometheus_client==0.26.0 redis==8.1.0 \
#       annoy==1.17.3 imageio-ffmpeg==0.8.1
#   mkdir -p .gpu/bin && cp "$(command -v redis-server)" .gpu/bin/   # only if the device has none (see step 4)
# (annoy has no manylinux wheel on every version: if pip download refuses it, build it here with
#  `pip wheel annoy==1.17.3 -w .gpu/wheels` on an x86-64 Linux with the device's Python version.)
#
# Steps, each bounded by `timeout` so one hang cannot eat the lease; results land in $OUT:
#   1. tests/unit/test_graphs.py on CUDA (graph capture, bucketing, fall-back)     test_graphs.txt
#   2. bench.encoder fp16 ViT-B/32, eager: offline batch 32 vs served to 16 and 64  encoder_eager.json
#      clients on one server, unbatched baseline at 16 (batching speed-up), p50/p99
#   3. the same with CUDA graphs                                                     encoder_graphs.json
#   4. bench.ingest with ViT-B/32 end to end (Redis, shard, encoder, ingest):       ingest.json
#      realtime factor and ffmpeg's decode limit on this machine (what bounds it)
#   5. a summary against the issue's targets                                         summary.json
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/pylib .gpu/wheels/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/pylib:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# imageio-ffmpeg ships a static ffmpeg; a carried redis-server (.gpu/bin) stands in for a missing one.
mkdir -p /tmp/gpubin
FFBIN=$(python3 -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())" 2>/dev/null) \
    && [ -z "$(command -v ffmpeg)" ] && ln -sf "$FFBIN" /tmp/gpubin/ffmpeg
export PATH=$PATH:/tmp/gpubin:$PWD/.gpu/bin
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc;
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee "$OUT/device.txt"

timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_graphs.py > "$OUT/test_graphs.txt" 2>&1
tail -2 "$OUT/test_graphs.txt"

for mode in eager graphs; do
    flag=$([ "$mode" = graphs ] && echo --cuda-graphs)
    timeout 150 python3 -m bench.encoder --json --device cuda --seconds 8 --skip-sampler --clients 16,64 $flag \
        > "$OUT/encoder_$mode.json" 2> "$OUT/encoder_$mode.err"
    echo "== encoder $mode (rc $?)"; cat "$OUT/encoder_$mode.json"; tail -3 "$OUT/encoder_$mode.err"
done

if command -v redis-server > /dev/null && command -v ffmpeg > /dev/null; then
    timeout 200 python3 -m bench.ingest --json --seconds 120 --models vitb32 > "$OUT/ingest.json" 2> "$OUT/ingest.err"
    echo "== ingest (rc $?)"; cat "$OUT/ingest.json"; tail -3 "$OUT/ingest.err"
else
    echo "== ingest skipped: redis-server or ffmpeg missing on the device" | tee "$OUT/ingest.err"
fi

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.json"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
summary = {}
for mode in ("eager", "graphs"):
    r = load(f"encoder_{mode}.json")
    if r is None:
        summary[mode] = "no result (see encoder_%s.err)" % mode
        continue
    by = r.get("served_by_clients", {})
    summary[mode] = {
        "offline_images_per_s": r["offline_images_per_s"],
        "served_16": by.get("16"), "served_64": by.get("64"),
        "batching_speedup_16": r["batching_speedup"], "target_speedup_16": 5,
        "efficiency_64": by.get("64", {}).get("efficiency"), "target_efficiency_64": 0.5,
        "p99_ms_16": r["batched_latency_ms"]["p99"],
    }
ingest = load("ingest.json")
summary["ingest"] = ingest if ingest is not None else "not measured (see ingest.err)"
print(json.dumps(summary, indent=2))
EOF
