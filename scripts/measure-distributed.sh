#!/usr/bin/env bash
# Data-parallel measurements of docs/distributed.md, on one machine:
#   1. throughput of the same run as 1 process × 2 threads and as 2 processes × 1 thread (mpirun), and the time per
#      step the 2 processes spend in communication (gradient and loss all-reduces, waiting for the slower rank
#      included), from each run's metrics.jsonl, after the first WARMUP steps;
#   2. the all-reduce of one gradient bucket as diffuse does it (crates/diffusion/examples/allreduce_bandwidth.rs)
#      against the MPI library's own MPI_Allreduce on the same message (scripts/distributed/allreduce.c).
#
# usage: bash scripts/measure-distributed.sh [STEPS=60] [CONFIG=fashion-small] [ELEMENTS=the model's parameters]
# Needs Open MPI (apt install openmpi-bin libopenmpi-dev libclang-dev). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-60}
config=${2:-fashion-small}
elements=${3:-}
warmup=$((steps / 5))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cargo build --release -q -p diffuse-cli --features mpi
cargo build --release -q -p diffuse-diffusion --features mpi --example allreduce_bandwidth
mpicc -O2 -o target/release/allreduce_c scripts/distributed/allreduce.c

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run=(train --config "$config" --steps "$steps" --log-every 1 --sample-every 0 --checkpoint-every 0
     --grid-steps 1 --grid-columns 1 --device cpu --lr-schedule constant)
echo "== $config, $steps steps: 1 process × 2 threads"
RAYON_NUM_THREADS=2 target/release/diffuse "${run[@]}" --out "$out/one" >"$out/one.log" 2>&1
grep -v '^$' "$out/one.log" | tail -n 1
echo "== $config, $steps steps: 2 processes × 1 thread"
mpirun -np 2 --bind-to none -x RAYON_NUM_THREADS=1 target/release/diffuse "${run[@]}" --out "$out/two" 2>&1 \
    | grep -v '^$' | tail -n 1

python3 - "$out" "$warmup" <<'PY'
import json, sys
out, warmup = sys.argv[1], int(sys.argv[2])
def summary(name):
    lines = [json.loads(l) for l in open(f"{out}/{name}/metrics.jsonl") if '"loss"' in l]
    first, last = lines[warmup], lines[-1]
    steps = last["step"] - first["step"]
    seconds = (last["elapsed_s"] - first["elapsed_s"]) / steps
    comm = sum(l["communication_s"] for l in lines[warmup + 1:]) / steps
    return seconds, comm
one, two = summary("one"), summary("two")
print(f"steps {warmup + 1}..end   seconds/step   communication s/step")
print(f"1 process × 2 threads   {one[0]:.4f}         {one[1]:.4f}")
print(f"2 processes × 1 thread  {two[0]:.4f}         {two[1]:.4f}")
print(f"throughput ratio (2 processes / 1 process): {one[0] / two[0]:.3f}")
PY

# By default one bucket of the model's size (what a step all-reduces, in ⌈P / 2^20⌉ buckets).
if [ -z "$elements" ]; then
    elements=$(grep -oE 'training [0-9]+ parameters' "$out/one.log" | grep -oE '[0-9]+')
fi
echo "== all-reduce of $elements f32 values, 2 processes"
mpirun -np 2 --bind-to none target/release/examples/allreduce_bandwidth "$elements" 20
mpirun -np 2 --bind-to none target/release/allreduce_c "$elements" 20
