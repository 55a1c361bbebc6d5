#!/usr/bin/env bash
# One call on a machine with one H100/H200-class GPU and no internet: the trainer benchmark on the
# Gemma 3 4B architecture (random weights, real config) under Runtune and the two TRL rows, with
# label-scoring evaluation against generation on the same model (bench/trainer.py), then the
# inference client's label scoring against generation on the local engine (bench/eval.py).
#
#     bench/gpu.sh                # GPU: the real architecture (about 8 minutes on an H200)
#     bench/gpu.sh --smoke        # CPU: every path on the tiny model, smallest counts (make test runs it,
#                                 # tests/trainer/test_bench.py)
#
# Packages the machine lacks (trl, liger-kernel; bitsandbytes where absent): wheels brought along, see
# bench/README.md; `RUNTUNE_BENCH_WHEELS=<folder of unpacked wheels>` puts them on the path.
# Figures (JSON) go to ${OUT:-bench/results}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${RUNTUNE_BENCH_WHEELS:+:$RUNTUNE_BENCH_WHEELS}${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$PWD/bench/results}"
mkdir -p "$OUT"
# Found without importing them (an import of trl alone takes seconds).
"$PY" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("trl") else 1)' \
    || { echo "bench/gpu.sh: trl is missing (pip install runtune[bench], or RUNTUNE_BENCH_WHEELS)" >&2; exit 2; }
if [ -z "${1:-}" ]; then
    # Liger is optional: without it the Liger row says it fell back, the others run.
    "$PY" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("liger_kernel") else 1)' \
        || echo "bench/gpu.sh: liger-kernel is missing (RUNTUNE_BENCH_WHEELS): its row will fall back" >&2
fi

if [ "${1:-}" = "--smoke" ]; then
    # The smallest counts that run every path once (every configuration and switch row, both label
    # sets, every scoring method), both benches in one process (the engine server is its own): the
    # time is the imports and the tiny model. RUNTUNE_BENCH_MODELS: tiny models already built.
    "$PY" -c 'import sys; from bench import eval, trainer
trainer.main(["--smoke", "--json", sys.argv[1] + "/trainer.json"])
eval.main(["--samples", "2", "--concurrency", "2", "--no-train", "--recipe-tokens", "4", "--rounds", "1", "--json", sys.argv[1] + "/eval.json"])' "$OUT"
else
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "bench/gpu.sh: no GPU (use --smoke on a CPU)")'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PY" -m bench.trainer --real-architecture --train 64 --eval 32 --json "$OUT/trainer.json"
    "$PY" -m bench.eval --json "$OUT/eval.json"
fi
echo "bench/gpu.sh: figures in $OUT"
