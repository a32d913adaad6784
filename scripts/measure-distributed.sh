#!/usr/bin/env bash
# Data-parallel measurements of docs/distributed.md, on one machine:
#   1. throughput of the same run as 1 process × 2 threads and as 2 processes × 1 thread (mpirun), the latter with
#      the gradient all-reduce after backward (--bucket-mb 0) and overlapped with it (--bucket-mb BUCKET_MB), and
#      the time per step the 2 processes wait for communication (loss and gradient all-reduces, waiting for the
#      slower rank included; overlapped, only what is left after backward), from each run's metrics.jsonl, after
#      the first WARMUP steps;
#   2. the all-reduce of one gradient bucket as diffuse does it (crates/diffusion/examples/allreduce_bandwidth.rs)
#      against the MPI library's own MPI_Allreduce on the same message (scripts/distributed/allreduce.c).
#
# usage: bash scripts/measure-distributed.sh [STEPS=60] [CONFIG=fashion-small] [ELEMENTS=the model's parameters]
#        [BUCKET_MB=25]
# Each figure is printed under the command that produced it.
# Needs Open MPI (apt install openmpi-bin libopenmpi-dev libclang-dev). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-60}
config=${2:-fashion-small}
elements=${3:-}
bucket_mb=${4:-25}
warmup=$((steps / 5))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cargo build --release -q -p diffuse-cli --features mpi
cargo build --release -q -p diffuse-diffusion --features mpi --example allreduce_bandwidth
mpicc -O2 -o target/release/allreduce_c scripts/distributed/allreduce.c

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run=(train --config "$config" --steps "$steps" --log-every 1 --sample-every 0 --checkpoint-every 0
     --grid-steps 1 --grid-columns 1 --device cpu --lr-schedule constant)
# Prints a command, then runs it with its output in $out/NAME.log, and shows the last line of that.
measure() {
    local name=$1
    shift
    echo "== $name: $*"
    "$@" >"$out/$name.log" 2>&1
    grep -v '^$' "$out/$name.log" | tail -n 1
}
measure one env RAYON_NUM_THREADS=2 target/release/diffuse "${run[@]}" --out "$out/one"
mpirun=(mpirun -np 2 --oversubscribe --bind-to none -x RAYON_NUM_THREADS=1 target/release/diffuse "${run[@]}")
measure after "${mpirun[@]}" --bucket-mb 0 --out "$out/after"
measure overlapped "${mpirun[@]}" --bucket-mb "$bucket_mb" --out "$out/overlapped"

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
runs = [("one", "1 process × 2 threads"), ("after", "2 processes, all-reduce after backward"),
        ("overlapped", "2 processes, overlapped all-reduce")]
print(f"steps {warmup + 1}..end{'':<34}seconds/step   communication s/step   throughput / 1 process")
one = summary("one")
for name, label in runs:
    seconds, comm = summary(name)
    print(f"{label:<47} {seconds:.4f}         {comm:.4f}                 {one[0] / seconds:.3f}")
PY

# By default one bucket of the model's size (what a step all-reduces, in ⌈P / 2^20⌉ buckets).
if [ -z "$elements" ]; then
    elements=$(grep -oE 'training [0-9]+ parameters' "$out/one.log" | grep -oE '[0-9]+')
fi
echo "== all-reduce of $elements f32 values, 2 processes"
for program in target/release/examples/allreduce_bandwidth target/release/allreduce_c; do
    echo "== mpirun -np 2 --oversubscribe --bind-to none $program $elements 20"
    mpirun -np 2 --oversubscribe --bind-to none "$program" "$elements" 20
done
