# The project's commands. Each target runs `setup` first; setup is quick when everything is there.
VENV ?= .venv
PY := $(VENV)/bin/python
CPP_BUILD := build/cpp
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-cpp test-py test-eigen-only sanitize bench lint format clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) examples/inverse_diffusion.py

$(CPP_BUILD)/build.ninja: CMakeLists.txt
	$(VENV)/bin/cmake -S . -B $(CPP_BUILD) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(VENV))/bin/ninja \
	  -DSLA_BUILD_PYTHON=OFF -DSLA_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release

test-cpp: setup $(CPP_BUILD)/build.ninja
	$(VENV)/bin/cmake --build $(CPP_BUILD)
	cd $(CPP_BUILD) && $(abspath $(VENV))/bin/ctest --output-on-failure

test-py: setup
	$(PY) -m pytest -q tests

test: test-cpp test-py test-eigen-only

bench: setup $(CPP_BUILD)/build.ninja
	$(VENV)/bin/cmake --build $(CPP_BUILD) --target bench_direct bench_stream bench_batch
	$(PY) benchmarks/bench_direct.py --cpp-bench $(CPP_BUILD)/bench_direct
	$(PY) benchmarks/bench_pardiso.py
	$(PY) benchmarks/bench_krylov.py --stream $(CPP_BUILD)/bench_stream
	$(PY) benchmarks/bench_api.py
	$(PY) benchmarks/bench_partition.py
	$(CPP_BUILD)/bench_batch 60 64 $(OMP_NUM_THREADS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples

format: setup
	$(VENV)/bin/ruff format src tests benchmarks examples
	clang-format -i csrc/*/*.cpp csrc/*/*.hpp csrc/include/sla/*.hpp

clean:
	rm -rf build .stamp

# The package without SuiteSparse (Eigen backend only) must build and pass the same Python tests.
test-eigen-only: setup
	VENV=$(VENV) bash scripts/test_eigen_only.sh

# The C++ core, its tests and a longer Matrix Market fuzz run under AddressSanitizer + UBSan
# (build/sanitize; FUZZ_CASES=N sets the fuzz run's length).
sanitize: setup
	VENV=$(VENV) bash scripts/sanitize.sh
