#!/usr/bin/env bash
# One call on a machine with one H100/H200-class GPU and no internet: the trainer benchmark on the
# Gemma 3 4B architecture (random weights, real config) under Runtune and the two TRL rows, with
# label-scoring evaluation against generation on the same model (bench/trainer.py), then the
# inference client's label scoring against generation on the local engine (bench/eval.py).
#
#     bench/gpu.sh                # GPU: the real architecture (about 8 minutes on an H200)
#     bench/gpu.sh --smoke        # CPU: every path on the tiny model, small counts (make test runs it)
#
# Packages the machine lacks (trl; bitsandbytes where absent): wheels brought along, see
# bench/README.md; `RUNTUNE_BENCH_WHEELS=<folder of unpacked wheels>` puts them on the path.
# Figures (JSON) go to ${OUT:-bench/results}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${RUNTUNE_BENCH_WHEELS:+:$RUNTUNE_BENCH_WHEELS}${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/bench/results}"
mkdir -p "$OUT"
"$PY" -c 'import trl' 2>/dev/null || { echo "bench/gpu.sh: trl is missing (pip install runtune[bench], or RUNTUNE_BENCH_WHEELS)" >&2; exit 2; }

if [ "${1:-}" = "--smoke" ]; then
    "$PY" -m bench.trainer --train 16 --eval 4 --json "$OUT/trainer.json"
    "$PY" -m bench.eval --samples 8 --concurrency 4 --no-train --json "$OUT/eval.json"
else
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "bench/gpu.sh: no GPU (use --smoke on a CPU)")'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" -m bench.trainer --real-architecture --train 64 --eval 32 --json "$OUT/trainer.json"
    "$PY" -m bench.eval --json "$OUT/eval.json"
fi
echo "bench/gpu.sh: figures in $OUT"
