#!/usr/bin/env bash
# Second GPU pass: the float32 many-chain rows of gpu_check.sh, whose first attempt hit that
# script's per-step limits (65 s / 105 s) before finishing. Each run prints its progress and,
# at the end, its timings split and min bulk ESS; a run still going at its limit prints how far
# it got (the checkpoint's draws) so the log says where the time went.
#   OUT=dir bash benchmarks/gpu_f32_rerun.sh            # GPU machine (wheels in .whl)
#   SMOKE=1 OUT=dir bash benchmarks/gpu_f32_rerun.sh    # CPU rehearsal, tiny model
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/gpu_f32}
mkdir -p "$OUT"
if ! python3 -c "import pymc" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export MPI_PYMC_JAX_CACHE=/tmp/jax_cache
if [ "${SMOKE:-0}" = 1 ]; then
    export MPI_PYMC_N=2000 MPI_PYMC_D=5; CHAINS="16 64"; LIMITS="60 60"; T=100; D=100
else
    export MPI_PYMC_N=500000 MPI_PYMC_D=54; CHAINS="64 1024"; LIMITS="200 170"; T=500; D=500
fi
set -- $LIMITS
for chains in $CHAINS; do
    limit=$1; shift
    work=/tmp/f32_$chains.h5
    rm -rf "$work" "$work".parts "$work".ckpt
    echo "== $chains chains float32, $T+$D, limit ${limit}s, $(date +%T)"
    start=$SECONDS
    timeout -k 5 "$limit" python3 -m mpi_pymc run examples/logistic_regression.py \
        --chains "$chains" --precision float32 --tune "$T" --draws "$D" --chunk-draws 50 \
        --seed 1 --out "$work" --progress 2>&1 | tr '\r' '\n' | grep -v -E "astype|^ *warnings|^$" \
        | awk 'NR<=3 || /^(warmup|sampling)/ {last=$0; if (NR%10==0) print; next} {print} END {print last}' \
        | tail -25
    echo "== exit ${PIPESTATUS[0]} after $((SECONDS - start))s"
    python3 - "$work" "$chains" <<'PY'
import json, sys
import numpy as np
path, chains = sys.argv[1], int(sys.argv[2])
row = {"chains": chains}
try:
    import h5py
    with h5py.File(path, "r") as f:
        row["timings"] = json.loads(f.attrs.get("timings", "{}"))
        row["draws_completed_min"] = int(np.min(f.attrs["draws_completed"]))
        if "diagnostics" in f.attrs:
            d = json.loads(f.attrs["diagnostics"])
            row["min_ess_bulk"] = float(np.nanmin(d["ess_bulk"]))
            row["max_r_hat"] = float(np.nanmax(d["r_hat"]))
            total = row["timings"]["total"]
            row["min_ess_bulk_per_s"] = row["min_ess_bulk"] / total
            row["draws_per_s_sampling"] = chains * int(f.attrs["draws"]) / row["timings"]["sampling"]
except Exception as exc:  # report how far it got, whatever happened
    row["error"] = f"{type(exc).__name__}: {exc}"
try:
    with np.load(path + ".ckpt") as c:
        row["checkpoint"] = json.loads(str(c["meta"]))["iteration"]
except Exception:
    pass
print("RESULT", json.dumps(row))
PY
done | tee "$OUT/gpu_f32_rerun.log"
