#!/usr/bin/env bash
# GPU check, ready to run on a machine with CUDA; finishes within 8 minutes.
#
#   benchmarks/gpu_check.sh [--cpu-dry-run] [--peak-tflops T] [other benchmarks/gpu_check.py options]
#
# 1. the CUDA and mixed-precision tests (tests/unit/test_training_cuda.py), at most 3 minutes;
# 2. benchmarks/gpu_check.py: the flights model trained on the GPU; samples/s, model FLOP/s
#    utilisation against the GPU's peak, parity of its ONNX export; at most 4.5 minutes.
# Without CUDA it stops at once with exit code 2 and says why. With --cpu-dry-run it runs the
# same steps on the CPU (the CUDA tests then skip) to check the plumbing; no GPU figure comes out.
# PYTHON selects the interpreter (default: the repository's .venv, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
dry=0
for arg in "$@"; do [[ "$arg" == "--cpu-dry-run" ]] && dry=1; done
start=$SECONDS

if [[ $dry == 0 ]]; then
  "$PY" benchmarks/gpu_check.py --probe || exit $?   # exit 2, and why, without CUDA
fi

echo "== 1/2 CUDA and mixed-precision tests"
tests_rc=0
timeout 180 "$PY" -m pytest -q -rs -p no:cacheprovider tests/unit/test_training_cuda.py || tests_rc=$?
if [[ $tests_rc != 0 ]]; then
  echo "gpu_check: CUDA tests failed (exit $tests_rc; 124 is the 3-minute limit)" >&2
  exit 1
fi

echo "== 2/2 flights model on the GPU"
timeout 270 "$PY" benchmarks/gpu_check.py "$@"
rc=$?
[[ $rc == 124 ]] && echo "gpu_check: the training check ran past its 4.5-minute limit" >&2
echo "gpu_check: done in $((SECONDS - start)) s (exit $rc)"
exit $rc
