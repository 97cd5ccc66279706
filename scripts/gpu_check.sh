#!/bin/bash
# The encoder's GPU checks, in one run on a lent GPU (the `device` tool), e.g.
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu/wheels"], timeout_s=540)
# .gpu/wheels (git-ignored) holds the wheels the device's Python lacks; fetch them here with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 --no-deps -d .gpu/wheels \
#       open_clip_torch ftfy wcwidth grpcio==1.85.3 grpcio-health-checking==1.85.1 grpcio-reflection==1.85.1 \
#       protobuf==7.36.2 av==18.1.0 pytest==9.2.0 pluggy iniconfig
# Writes to $OUT: the CUDA-graph unit test, then bench.encoder (fp16, 16 clients) eager and with CUDA graphs.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --target /tmp/pylib .gpu/wheels/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/pylib:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_graphs.py > "$OUT/test_graphs.txt" 2>&1
tail -3 "$OUT/test_graphs.txt"
for mode in eager graphs; do
    flag=$([ "$mode" = graphs ] && echo --cuda-graphs)
    timeout 200 python3 -m bench.encoder --json --device cuda --seconds 10 --skip-sampler --clients 16 $flag \
        > "$OUT/encoder_gpu_$mode.json" 2> "$OUT/encoder_gpu_$mode.err"
    cat "$OUT/encoder_gpu_$mode.json"; tail -3 "$OUT/encoder_gpu_$mode.err"
done
