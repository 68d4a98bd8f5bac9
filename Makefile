# make test  — set up (once), build, run every C++ and Python test
# make demo  — set up (once), build, run the student–teacher comparison
# make bench — the CPU benchmark table of docs/benchmarks.md
# make bench-cpp — where the CPU step's time goes (Google Benchmark, data in cache)
# make gpu-check — on a GPU machine: build, GPU tests, GPU benchmark (scripts/gpu_check.sh)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
JOBS ?= $(shell nproc)
export CMAKE_BUILD_PARALLEL_LEVEL := $(JOBS)

.PHONY: all setup build test test-cpp test-python demo bench bench-cpp gpu-check clean run-ctest run-pytest

all: test

setup:
	@scripts/setup_env.sh

# An editable install: setup.py drives CMake in build/ (incremental) and puts
# the extension into python/mirrorflow/, which the virtual environment imports.
build: setup
	@echo "== build (pip install --no-build-isolation -e .)"
	@MIRRORFLOW_CMAKE_ARGS="-DMIRRORFLOW_BUILD_TESTS=ON $(CMAKE_ARGS)" \
	  $(PY) -m pip install --no-build-isolation --no-deps -q -e .
	@$(PY) -c "import mirrorflow; print('mirrorflow', mirrorflow.build_info())"

run-ctest:
	@echo "== C++ tests (GoogleTest through ctest)"
	@cd build && ctest --output-on-failure --progress -j $(JOBS)

run-pytest:
	@echo "== Python tests (pytest)"
	@$(PY) -m pytest tests/python -q

test: build
	@$(MAKE) --no-print-directory run-ctest run-pytest

test-cpp: build
	@$(MAKE) --no-print-directory run-ctest

test-python: build
	@$(MAKE) --no-print-directory run-pytest

demo: build
	@$(PY) experiments/student_teacher/demo.py

bench: build
	@$(PY) bench/bench_step.py --device cpu

bench-cpp: build
	@build/bench/kernel_throughput

gpu-check:
	@PYTHON=$(if $(wildcard $(PY)),$(PY),python3) scripts/gpu_check.sh

clean:
	rm -rf build python/mirrorflow/_C*.so python/mirrorflow/lib python/mirrorflow/include
