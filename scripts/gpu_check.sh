#!/usr/bin/env bash
# shellcheck disable=SC2317  # the stage functions run through `bash -c` in run_stage
# The GPU check: on a machine with an NVIDIA GPU, PyTorch (CUDA build), nvcc,
# CMake and pytest, builds mirrorflow from this tree into a fresh build
# directory, installs it into a private prefix, runs the GPU tests and the GPU
# step benchmark, and prints a summary. Needs no network and no GoogleTest.
#
#   scripts/gpu_check.sh [OUT_DIR]
#
# Everything (log, versions, pytest report, benchmark JSON/markdown, summary)
# is written under OUT_DIR (default: $OUT, else results/gpu_check). A failing
# stage does not stop the later ones; the exit status is 0 only when the build,
# the tests and the benchmark all succeeded.
#
# Environment: PYTHON (python3), JOBS (nproc), ARCHS (90: sm_90, the H100/H200),
# BUILD_DIR (a fresh temporary directory), BUILD_TIMEOUT/TEST_TIMEOUT/
# BENCH_TIMEOUT (seconds: 220/200/120, so that the whole check stays under ten
# minutes even when every stage runs into its limit), PYTEST_ARGS (extra pytest
# arguments).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT_DIR=$(mkdir -p "${1:-${OUT:-$ROOT/results/gpu_check}}" && cd "${1:-${OUT:-$ROOT/results/gpu_check}}" && pwd)
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
ARCHS=${ARCHS:-90}
BUILD_DIR=${BUILD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mirrorflow-gpu-check.XXXXXX")}
PREFIX="$BUILD_DIR/site"
BUILD_TIMEOUT=${BUILD_TIMEOUT:-220}
TEST_TIMEOUT=${TEST_TIMEOUT:-200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-120}
START=$(date +%s)

exec > >(tee -a "$OUT_DIR/gpu_check.log") 2>&1
cd "$ROOT"

declare -A STATUS=()
declare -A SECONDS_TAKEN=()
ORDER=()

# run_stage NAME TIMEOUT COMMAND...: runs and records the status; never exits.
run_stage() {
  local name=$1 limit=$2
  shift 2
  ORDER+=("$name")
  echo
  echo "==== $name (limit ${limit}s): $*"
  local t0 rc=0
  t0=$(date +%s)
  # A stage is one of the functions below, run by a child bash under `timeout`
  # (which ends the whole process group when the limit is reached).
  timeout --kill-after=10 "$limit" bash -c 'set -euo pipefail; "$@"' stage "$@" || rc=$?
  SECONDS_TAKEN[$name]=$(($(date +%s) - t0))
  if ((rc == 0)); then
    STATUS[$name]="ok"
  elif ((rc == 124 || rc == 137)); then
    STATUS[$name]="TIMED OUT after ${limit}s"
  else
    STATUS[$name]="FAILED (exit $rc)"
  fi
  echo "==== $name: ${STATUS[$name]} in ${SECONDS_TAKEN[$name]}s"
  return 0
}

versions() {
  versions_report 2>&1 | tee "$OUT_DIR/versions.txt"
}

versions_report() {
  date -u
  uname -a
  echo "repository: $ROOT ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git')," \
       "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files)"
  (command -v nvidia-smi >/dev/null && nvidia-smi) || echo "nvidia-smi: not found"
  (command -v nvcc >/dev/null && nvcc --version) || echo "nvcc: not on PATH"
  cmake --version | head -1
  (command -v ninja >/dev/null && echo "ninja $(ninja --version)") || echo "ninja: not found"
  "$PYTHON" - <<'EOF'
import sys, torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available",
      torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB",
          p.multi_processor_count, "SMs")
try:
    import pytest
    print("pytest", pytest.__version__)
except ImportError:
    print("pytest: not installed")
EOF
}

build() {
  local torch_prefix generator=()
  torch_prefix=$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$ROOT" -B "$BUILD_DIR/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DMIRRORFLOW_BUILD_PYTHON=ON -DMIRRORFLOW_BUILD_TESTS=OFF \
    -DMIRRORFLOW_BUILD_TEST_PROGRAMS=ON -DMIRRORFLOW_CUDA=ON \
    -DMIRRORFLOW_CUDA_ARCHITECTURES="$ARCHS" \
    -DPython3_EXECUTABLE="$(command -v "$PYTHON")" -DCMAKE_PREFIX_PATH="$torch_prefix"
  # Only what the GPU tests use (the library, the Python module, the C++
  # trajectory program), not the C++ training loop and benchmarks.
  cmake --build "$BUILD_DIR/build" --parallel "$JOBS" --target mirrorflow _C optimizer_trajectory
  # The package: the Python sources of the tree plus what CMake installs.
  rm -rf "$PREFIX" && mkdir -p "$PREFIX/mirrorflow"
  cp "$ROOT"/python/mirrorflow/*.py "$PREFIX/mirrorflow/"
  cmake --install "$BUILD_DIR/build" --prefix "$PREFIX/mirrorflow" >/dev/null
  PYTHONPATH="$PREFIX" "$PYTHON" -c \
    'import mirrorflow; print("installed:", mirrorflow.__file__, mirrorflow.build_info())'
}

gpu_tests() {
  # One line per test into pytest.log (kept if the stage runs out of time),
  # the failures and the totals on the console.
  local rc=0 limits=(--durations=15)
  # With pytest-timeout, a test that hangs costs 120 s, not the stage.
  "$PYTHON" -c 'import pytest_timeout' 2>/dev/null && limits+=(--timeout=120)
  # shellcheck disable=SC2086
  PYTHONPATH="$PREFIX" \
  MIRRORFLOW_TRAJECTORY_PROGRAM="$BUILD_DIR/build/tests/programs/optimizer_trajectory" \
    "$PYTHON" -m pytest tests/python/test_cuda_build.py tests/python/test_cuda_runtime.py \
      tests/python/test_cpp_parity.py tests/python/test_cuda.py \
      tests/python/test_optimizer_contract.py \
      -v -rfEs -p no:cacheprovider --junitxml="$OUT_DIR/pytest.xml" "${limits[@]}" \
      ${PYTEST_ARGS:-} > "$OUT_DIR/pytest.log" 2>&1 || rc=$?
  grep -E "^(FAILED|ERROR)|^=+ .*(passed|failed|error)" "$OUT_DIR/pytest.log" | tail -n 60 || true
  return "$rc"
}

bench() {
  PYTHONPATH="$PREFIX" "$PYTHON" bench/bench_gpu_step.py --out "$OUT_DIR"
}

summary() {
  echo
  echo "==================== gpu_check summary ===================="
  for name in "${ORDER[@]}"; do
    printf '%-10s %s (%ss)\n' "$name" "${STATUS[$name]}" "${SECONDS_TAKEN[$name]}"
  done
  echo "total: $(($(date +%s) - START))s; results in $OUT_DIR"
  "$PYTHON" - "$OUT_DIR" <<'EOF' || true
import json, os, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
xml = os.path.join(out, "pytest.xml")
if os.path.exists(xml):
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed = int(suite.get("tests")), int(suite.get("failures"))
    errors, skipped = int(suite.get("errors")), int(suite.get("skipped"))
    print(f"tests: {total - failed - errors - skipped} passed, {failed} failed, "
          f"{errors} errors, {skipped} skipped (of {total})")
    for case in suite.iter("testcase"):
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            print(f"  FAILED {case.get('classname')}::{case.get('name')}: "
                  f"{(bad.get('message') or '')[:160]}")
elif os.path.exists(os.path.join(out, "pytest.log")):
    lines = open(os.path.join(out, "pytest.log")).read().splitlines()
    counts = {k: sum(f" {k}" in line for line in lines)
              for k in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
    print("tests: incomplete (no junit report); pytest.log so far:", counts)
    for line in lines:
        if " FAILED" in line or " ERROR" in line:
            print("  " + line[:200])
else:
    print("tests: no report (pytest did not run)")
bench = os.path.join(out, "bench_gpu_step.md")
if os.path.exists(bench):
    print()
    print(open(bench).read())
elif os.path.exists(os.path.join(out, "bench_gpu_step.json")):
    print("benchmark:", json.load(open(os.path.join(out, "bench_gpu_step.json"))))
else:
    rows = os.path.join(out, "bench_gpu_step.rows.jsonl")
    if os.path.exists(rows):
        print("benchmark: incomplete; the rows measured:")
        for line in open(rows):
            r = json.loads(line)
            print("  {set:>10} | {method:<42} | {ms} ms | {pct} % of copy".format(
                set=r["set"], method=r["method"], ms=r.get("ms", r.get("error")),
                pct=r.get("pct_copy")))
    else:
        print("benchmark: no results")
EOF
}

export ROOT OUT_DIR PYTHON JOBS ARCHS BUILD_DIR PREFIX
export -f versions versions_report build gpu_tests bench
echo "gpu_check: output in $OUT_DIR, build in $BUILD_DIR"
run_stage versions 30 versions
run_stage build "$BUILD_TIMEOUT" build
if [[ ${STATUS[build]} == ok ]]; then
  run_stage tests "$TEST_TIMEOUT" gpu_tests
  run_stage bench "$BENCH_TIMEOUT" bench
else
  echo "gpu_check: the build failed; tests and benchmark skipped"
fi
summary | tee "$OUT_DIR/summary.txt"
for name in build tests bench; do
  [[ ${STATUS[$name]:-missing} == ok ]] || exit 1
done
exit 0
