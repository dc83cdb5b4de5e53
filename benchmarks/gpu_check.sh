#!/usr/bin/env bash
# One-shot GPU check: PyMC's own numpyro path (the reference row) against mpi_pymc on one GPU.
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh          # on the GPU machine (after
#                                                       # benchmarks/make_gpu_wheels.sh here)
#   SMOKE=1 OUT=/tmp/gpu_smoke bash benchmarks/gpu_check.sh   # tiny CPU rehearsal
#
# Steps, each under `timeout`, all inside BUDGET seconds (default 540, so the script ends in
# under 10 minutes even when a step hangs; a step that would start too late is skipped):
#   0. install the carried wheels (.whl/*.whl -> /tmp/site) when PyMC is missing; fall back to
#      the carried Open MPI (.whl/mpi) when the image's mpi4py cannot start MPI
#   1. nvidia-smi, versions, JAX devices, first PyMC import
#   2. reference: pm.sample(nuts_sampler="numpyro"), 4 chains vectorized float64, TUNE+DRAWS
#   3. mpi_pymc --sampler hmc, 4 chains float64, TUNE+DRAWS (directly comparable with 2)
#   4. mpi_pymc --sampler hmc, 64 chains float32, 500+500, --adapt-group 64
#   5. mpi_pymc --sampler hmc, 1024 chains float32, 500+500, --adapt-group 64 (NUTS did not
#      finish these two in the first device run: vectorized NUTS waits for each step's deepest
#      tree; the group shares one step size and length, so no chain waits for another)
#   6. the same with 500+2000: more draws per chain, so sampling, not start-up, dominates
#   7. step 5 with each chain adapting alone (--adapt-group 1), as the 2026-11 device runs did
#   8. mpi_pymc NUTS (the default, vectorized on a GPU), 4 chains float64, TUNE+DRAWS
#   8b. nuts_profile: benchmarks/nuts_profile.py, cost per lockstep leapfrog of the project's
#      NUTS, numpyro's and blackjax's against one gradient, 1 chain float64 and 64 chains float32
#   8b'. nuts_profile_pytensor: the same two profiles over PyTensor's JAX program, without
#      mpi_pymc's graph rewrites (before/after of mpi_pymc/model/graph_rewrites.py)
#   8c. nuts_many: mpi_pymc's default NUTS, 64 chains float32, 500+500
#   8d. answer_nuts / answer_hmc: time to answer, --until-ess GOAL (10,000; SMOKE 1,000) with
#      64 float32 chains, --draws 2000 as the cap, goal checked every 50 draws, cold JAX cache:
#      the default NUTS, and hmc with --adapt-group 64
#   8e. answer_warm: 8d for hmc then NUTS, each twice with the user's JAX compile cache (the
#      first run fills it, the second starts warm)
#   8f. diag_time: benchmarks/diagnostics_time.py on this checkout, the summary diagnostics of
#      1024 chains x 500 draws x 55 parameters (and 64 x 300 x 55) on the host's cores, as a
#      1024-chain run computes them at its end (#15: they took 9.9 s on an H200 host)
#   9. collect: $OUT/gpu_results.json and $OUT/gpu_results.md; the whole log is
#      $OUT/gpu_check.log, one JSON line per step in $OUT/steps.jsonl
# STEPS="facts hmc_many" runs only the steps named (keys in want() below); default all.
# Model: examples/logistic_regression.py with N=500,000, D=54 (SMOKE=1: N=2,000, D=5,
# 100+100 draws, and 4/16/64 chains so that it runs on a CPU in a few minutes).
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1

OUT=${OUT:-$REPO/gpu_check_out}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-$REPO/.whl}
SITE=${SITE:-/tmp/site}
MPI_PREFIX=${MPI_PREFIX:-/tmp/mpi}
BUDGET=${BUDGET:-540}
SMOKE=${SMOKE:-0}
STEPS=${STEPS:-all}
export GPU_CHECK_WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$GPU_CHECK_WORK"
rm -f "$OUT/steps.jsonl"

if [ "$SMOKE" = 1 ]; then
    export MPI_PYMC_N=${MPI_PYMC_N:-2000} MPI_PYMC_D=${MPI_PYMC_D:-5}
    TUNE=100 DRAWS=100 SMALL_TUNE=100 SMALL_DRAWS=100 LONG_DRAWS=300 MANY=16 MOST=64 SMOKE_FLAG=--smoke
    GOAL=1000
    PROFILE_TRANSITIONS=10
    DIAG_SHAPES=64x100x5
else
    export MPI_PYMC_N=${MPI_PYMC_N:-500000} MPI_PYMC_D=${MPI_PYMC_D:-54}
    TUNE=1000 DRAWS=1000 SMALL_TUNE=500 SMALL_DRAWS=500 LONG_DRAWS=2000 MANY=64 MOST=1024 SMOKE_FLAG=
    GOAL=10000
    PROFILE_TRANSITIONS=50
    DIAG_SHAPES=1024x500x55,64x300x55
fi
DEADLINE=$((SECONDS + BUDGET))

# want KEY: is step KEY among STEPS ("all", or some of: facts reference hmc4 hmc_many hmc_most
# hmc_long hmc_alone nuts4 nuts_profile nuts_profile_pytensor nuts_many answer_nuts answer_hmc
# answer_warm diag_time)?
want() {
    [ "$STEPS" = all ] || [[ " $STEPS " == *" $1 "* ]]
}

# step NAME LIMIT COMMAND...: run COMMAND under timeout, never past the deadline.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((DEADLINE - SECONDS - 20))
    if [ "$left" -lt 30 ]; then
        echo "== $name: skipped, only ${left}s of the ${BUDGET}s budget left"
        printf '{"step": "skipped", "name": "%s", "ok": false, "error": "skipped: out of time"}\n' \
            "$name" >>"$OUT/steps.jsonl"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "== $name (limit ${limit}s, $(date +%T), ${SECONDS}s into the check)"
    local t0=$SECONDS rc
    STEP_LIMIT=$limit timeout -k 10 "$limit" "$@"
    rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0))s"
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        printf '{"step": "killed", "name": "%s", "ok": false, "error": "killed by timeout after %ss"}\n' \
            "$name" "$limit" >>"$OUT/steps.jsonl"
    fi
    return $rc
}

install_wheels() {
    if $PYTHON -c "import pymc, arviz" 2>/dev/null; then
        echo "PyMC and ArviZ are importable: no wheels installed"
    elif ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        timeout 120 $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --target "$SITE" "$WHEELS"/*.whl || echo "wheel install failed"
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "PyMC is missing and no wheels in $WHEELS: run benchmarks/make_gpu_wheels.sh first"
    fi
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
    local probe='from mpi4py import MPI; print("MPI:", MPI.Get_library_version().splitlines()[0])'
    if timeout 60 $PYTHON -c "$probe" 2>"$GPU_CHECK_WORK/mpi_probe.err"; then
        return 0
    fi
    echo "mpi4py cannot start MPI here ($(tail -n 2 "$GPU_CHECK_WORK/mpi_probe.err" | tr '\n' ' '))"
    echo "trying the carried Open MPI ($WHEELS/mpi)"
    if ls "$WHEELS"/mpi/*.whl >/dev/null 2>&1; then
        timeout 120 $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --upgrade --prefix "$MPI_PREFIX" "$WHEELS"/mpi/*.whl || echo "MPI wheel install failed"
        local mpisite
        mpisite=$(ls -d "$MPI_PREFIX"/lib/python3*/site-packages 2>/dev/null | head -1)
        export PYTHONPATH=${mpisite:+$mpisite:}$PYTHONPATH
        export LD_LIBRARY_PATH=$MPI_PREFIX/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
        # The wheel stores libmpi.so as a text stand-in for a link: name the real library.
        export MPI4PY_LIBMPI=$MPI_PREFIX/lib/libmpi.so.40 OPAL_PREFIX=$MPI_PREFIX
        timeout 60 $PYTHON -c "$probe" || echo "MPI still unavailable: the mpi_pymc rows will fail"
    fi
}

main() {
    echo "gpu_check: SMOKE=$SMOKE N=$MPI_PYMC_N D=$MPI_PYMC_D budget ${BUDGET}s, results in $OUT"
    echo "== nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        timeout 30 nvidia-smi
        GPUS_PER_RANK=1
    else
        echo "nvidia-smi: not found (CPU run)"
        GPUS_PER_RANK=0
    fi
    echo "== $($PYTHON --version 2>&1) at $(command -v "$PYTHON")"
    install_wheels

    local g=(--out "$OUT" --gpus-per-rank "$GPUS_PER_RANK")
    want facts && step facts 90 $PYTHON benchmarks/gpu_check.py facts --out "$OUT"
    want reference && step "reference pm.sample numpyro" 150 $PYTHON benchmarks/gpu_check.py reference \
        --out "$OUT" --chains 4 --tune $TUNE --draws $DRAWS
    want hmc4 && step "mpi_pymc hmc f64 4 chains" 90 $PYTHON benchmarks/gpu_check.py mpi "${g[@]}" \
        --name hmc-f64-4ch --sampler hmc --chains 4 --precision float64 --tune $TUNE \
        --draws $DRAWS
    local f32=(--sampler hmc --precision float32 --tune $SMALL_TUNE)
    want hmc_many && step "mpi_pymc hmc f32 $MANY chains" 80 $PYTHON benchmarks/gpu_check.py mpi \
        "${g[@]}" "${f32[@]}" --name "hmc-f32-${MANY}ch" --chains $MANY --adapt-group $MANY \
        --draws $SMALL_DRAWS
    want hmc_most && step "mpi_pymc hmc f32 $MOST chains" 150 $PYTHON benchmarks/gpu_check.py mpi \
        "${g[@]}" "${f32[@]}" --name "hmc-f32-${MOST}ch" --chains $MOST --adapt-group $MANY \
        --draws $SMALL_DRAWS
    want hmc_long && step "mpi_pymc hmc f32 $MOST chains, long" 200 $PYTHON benchmarks/gpu_check.py \
        mpi "${g[@]}" "${f32[@]}" --name "hmc-f32-${MOST}ch-long" --chains $MOST \
        --adapt-group $MANY --draws $LONG_DRAWS
    want hmc_alone && step "mpi_pymc hmc f32 $MOST chains, alone" 150 $PYTHON benchmarks/gpu_check.py \
        mpi "${g[@]}" "${f32[@]}" --name "hmc-f32-${MOST}ch-alone" --chains $MOST \
        --draws $SMALL_DRAWS
    want nuts4 && step "mpi_pymc NUTS f64 4 chains" 100 $PYTHON benchmarks/gpu_check.py mpi "${g[@]}" \
        --name f64-4ch --chains 4 --precision float64 --tune $TUNE --draws $DRAWS
    local profile=(benchmarks/nuts_profile.py examples/logistic_regression.py --repeats 2)
    want nuts_profile && step "NUTS per leapfrog, 1 chain f64" 90 $PYTHON "${profile[@]}" \
        --chains 1 --transitions $PROFILE_TRANSITIONS --json "$OUT/nuts_profile_1ch_f64.json"
    want nuts_profile && step "NUTS per leapfrog, $MANY chains f32" 90 $PYTHON "${profile[@]}" \
        --chains $MANY --precision float32 --transitions $PROFILE_TRANSITIONS \
        --json "$OUT/nuts_profile_${MANY}ch_f32.json"
    # The same with PyTensor's own JAX program (no graph rewrites of ours): before and after.
    want nuts_profile_pytensor && step "NUTS per leapfrog, 1 chain f64, PyTensor's graph" 90 \
        $PYTHON "${profile[@]}" --graph pytensor --kernels gradient,nuts --chains 1 --transitions $PROFILE_TRANSITIONS \
        --json "$OUT/nuts_profile_1ch_f64_pytensor.json"
    want nuts_profile_pytensor && step "NUTS per leapfrog, $MANY chains f32, PyTensor's graph" 90 \
        $PYTHON "${profile[@]}" --graph pytensor --kernels gradient,nuts --chains $MANY --precision float32 \
        --transitions $PROFILE_TRANSITIONS --json "$OUT/nuts_profile_${MANY}ch_f32_pytensor.json"
    want nuts_many && step "mpi_pymc NUTS f32 $MANY chains" 100 $PYTHON benchmarks/gpu_check.py mpi \
        "${g[@]}" --name "nuts-f32-${MANY}ch" --chains $MANY --precision float32 \
        --tune $SMALL_TUNE --draws $SMALL_DRAWS
    local answer=(--chains $MANY --precision float32 --tune $TUNE --draws 2000 --until-ess $GOAL)
    want answer_nuts && step "time to ESS $GOAL, NUTS f32 $MANY chains" 120 $PYTHON \
        benchmarks/gpu_check.py mpi "${g[@]}" "${answer[@]}" --name "answer-nuts-${MANY}ch"
    want answer_hmc && step "time to ESS $GOAL, hmc f32 $MANY chains" 120 $PYTHON \
        benchmarks/gpu_check.py mpi "${g[@]}" "${answer[@]}" --name "answer-hmc-${MANY}ch" \
        --sampler hmc --adapt-group $MANY
    # The same twice with the user's compile cache: the first run fills it (a cold start), the
    # second is what a user's next run of this model costs (XLA programs loaded, not compiled).
    local name
    for name in hmc nuts; do
        local extra=()
        [ $name = hmc ] && extra=(--sampler hmc --adapt-group $MANY)
        want answer_warm && step "time to ESS $GOAL, $name, fills the compile cache" 120 $PYTHON \
            benchmarks/gpu_check.py mpi "${g[@]}" "${answer[@]}" "${extra[@]}" --warm-cache \
            --name "answer-$name-${MANY}ch-fill"
        want answer_warm && step "time to ESS $GOAL, $name, warm compile cache" 120 $PYTHON \
            benchmarks/gpu_check.py mpi "${g[@]}" "${answer[@]}" "${extra[@]}" --warm-cache \
            --name "answer-$name-${MANY}ch-warm"
    done
    want diag_time && step "summary diagnostics, $DIAG_SHAPES" 90 $PYTHON \
        benchmarks/diagnostics_time.py --trees "$REPO" --shapes "$DIAG_SHAPES" --repeats 2
    echo
    echo "== collect"
    timeout 60 $PYTHON benchmarks/gpu_check.py collect --out "$OUT" $SMOKE_FLAG
    local rc=$?
    echo "gpu_check finished after ${SECONDS}s (exit $rc)"
    return $rc
}

set -o pipefail
main 2>&1 | tee "$OUT/gpu_check.log"
