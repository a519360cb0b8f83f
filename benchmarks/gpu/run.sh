#!/usr/bin/env bash
# The prepared GPU run: builds pyface against the machine's torch, runs the CUDA and Triton
# tests, then `pyface bench --device cuda`, all inside about 8 minutes, and writes logs and
# reports under one folder ($OUT when set, else ./gpu-run).
#
#   benchmarks/gpu/run.sh              build, tests, bench float32 (ops and model steps)
#   benchmarks/gpu/run.sh half         bench bfloat16 and float16 op rows (after a first run)
#   benchmarks/gpu/run.sh --dry-run    the same steps on a CPU machine, cheaply: no build when
#                                      the extension already loads, the error cases, the GPU
#                                      tests collected, a --quick CPU bench (CI runs this)
# PYFACE_GPU_BUDGET_S (default 470) bounds the whole run; each step gets what is left.
set -uo pipefail
cd "$(dirname "$0")/../.."
phase=${1:-full}
dry=0
[ "$phase" = "--dry-run" ] && { dry=1; phase=full; }
out=${OUT:-$PWD/gpu-run}
mkdir -p "$out"
budget=${PYFACE_GPU_BUDGET_S:-470}
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
python=${PYTHON:-python3}
failed=0
left() { echo $(( budget - SECONDS )); }
step() { echo; echo "== $* (t=${SECONDS}s, $(left)s left)"; }

exec > >(tee -a "$out/run.log") 2>&1
step "machine"
if [ $dry = 0 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || exit 1
fi
$python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| triton', triton.__version__)" || exit 1

if [ "$phase" = full ]; then
  if [ $dry = 1 ] && $python -c "from pyface import _extension as e; assert e.loaded()" 2>/dev/null; then
    step "build: skipped (dry run, the extension already loads)"
  else
    step "build"
    # Only this GPU's architecture: the build is for this machine, and one arch halves the time.
    [ $dry = 0 ] && export CUDAARCHS=${CUDAARCHS:-90}
    timeout "$(left)" env PYFACE_CUDA=$(( 1 - dry )) $python -m pip install -v --no-build-isolation --no-deps -e . \
      > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; echo "build failed"; exit 1; }
    grep -E "pyface: (torch|CUDA)" "$out/build.log"
  fi
fi

step "extension"
$python - "$dry" <<'PY' || exit 1
import sys
import pyface
from pyface import _extension
assert _extension.loaded(), "pyface._C did not load"
if sys.argv[1] == "0":
    assert _extension.has_cuda_kernels(), "pyface._C was built without its CUDA kernels"
print("pyface", pyface.__version__, _extension._C.build_info, pyface.backends())
PY

bench() {  # bench DIR TIMEOUT ARGS...: SIGINT at the timeout, so the report is still written
  local dir=$1 limit=$2; shift 2
  timeout -s INT -k 20 "$limit" $python -m pyface.cli bench "$@" --out "$out/$dir" > "$out/$dir.log" 2>&1
  local status=$?
  echo "bench exit $status"
  [ $status = 0 ] || failed=1
  grep -vE "^\s*$|it/s|run/s" "$out/$dir.log" | tail -n 60
  rm -f "$out/$dir"/*.png  # charts are redrawn from the JSON; the files that come back are few
  for j in "$out/$dir"/bench-*.json; do [ -f "$j" ] && rm -f "${j}l"; done
}

if [ "$phase" = full ]; then
  step "errors raised in C++ (each case in its own process)"
  timeout 150 $python benchmarks/gpu/errors.py || failed=1
  if [ $dry = 1 ]; then
    step "tests: collected only (dry run)"
    $python -m pytest tests -q -p no:cacheprovider -m "cuda or triton" --collect-only > "$out/collect.log" 2>&1 || failed=1
    tail -n 1 "$out/collect.log"
  else
    # Workers in separate processes: a crash in one test costs that test, not the run.
    tests() {  # tests NAME LIMIT MARKS
      timeout -k 10 "$2" $python -m pytest tests -q -p no:cacheprovider -m "$3" -n 12 --timeout 120 -rfE \
        > "$out/$1.log" 2>&1
      local status=$?
      echo "pytest exit $status"
      [ $status = 0 ] || failed=1
      grep -E "^(FAILED|ERROR)|passed|failed|crashed" "$out/$1.log" | cut -c1-240 | tail -n 30
    }
    step "tests on the GPU (cuda and triton marks)"
    tests tests-gpu 120 "cuda or triton"
    step "the other tests, on this machine's torch"
    tests tests-cpu "$(( $(left) - 200 ))" "not cuda and not triton"
  fi
  step "bench float32"
  if [ $dry = 1 ]; then
    bench bench-cpu "$(left)" --device cpu --quick --ops weighted_l1_loss,keypoint_warp
  else
    bench bench-f32 "$(( $(left) - 10 ))" --device cuda --dtypes float32
  fi
else
  step "bench bfloat16, float16"
  bench bench-half "$(( $(left) - 10 ))" --device cuda --dtypes bfloat16,float16 \
    --ops weighted_l1_loss,global_local_attention,softmax_pool,keypoint_heatmaps,keypoint_warp,sparse_motion_warp
fi
step "done: $([ $failed = 0 ] && echo "every step passed" || echo "some step FAILED")"
exit $failed
