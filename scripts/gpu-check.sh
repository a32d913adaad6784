#!/usr/bin/env bash
# The GPU verification in one command, in two halves (docs/kernels/gpu-check.md says what each part proves).
#
#   bash scripts/gpu-check.sh prepare
#       Here (x86-64, no GPU needed): builds every GPU test binary (the test targets that list tests with
#       diffuse_gpu_test::on_gpu!), cuda_bench and a release `diffuse`, strips them into .device-bin/ (git-ignored)
#       with a MANIFEST, and prints the device tool's `run` call that carries them.
#   bash scripts/gpu-check.sh rehearse
#       Here, without a GPU: prepare, then the there-half on the packed binaries, checking that every part fails
#       for want of a GPU (as it must: nothing may pass that did not run), that the output fits the device tool's
#       limits, and that the binaries fail loudly on a fake driver that cannot JIT the kernels.
#   bash scripts/gpu-check.sh there OUT [PART...]
#       On the GPU machine (NVIDIA driver, compute-sanitizer, PyTorch; no Rust, no network), from the repository
#       root: runs the parts (default: all, in this order) within 7.5 minutes in all, one log per part, and leaves
#       exactly two files in OUT: summary.txt and logs.tar.gz. Exits 1 if any part failed.
#         env        the machine, the driver, `diffuse info --devices` (cuda:0 must open)
#         tests      every GPU test binary with DIFFUSE_REQUIRE_GPU=1 (a missing GPU fails, never skips)
#         train      200 steps of `diffuse train --device cuda` beside the same run on the CPU and a one-ulp
#                    control on the CPU, then the CUDA run again with --precision bf16; the loss curves must agree
#                    (scripts/gpu-check/compare_losses.py)
#         bench      cuda_bench, then benches/peers/torch_cuda.py, then the two side by side
#         memcheck racecheck synccheck initcheck
#                    compute-sanitizer on the kernel test binaries, one proptest case per property
#   bash scripts/gpu-check.sh unpack DIR
#       Here, after the run: DIR holds the fetched summary.txt and logs.tar.gz; they are unpacked into
#       docs/bench/gpu-check/<date>-<device>-<commit>/ to be committed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.device-bin
PARTS=(env tests train bench memcheck racecheck synccheck initcheck)
# seconds each part may take at most; the whole run stops starting parts at DEADLINE
declare -A CAP=([env]=30 [tests]=150 [train]=150 [bench]=150 [memcheck]=90 [racecheck]=90 [synccheck]=60 [initcheck]=75)
DEADLINE=${GPU_CHECK_DEADLINE:-450}
TRAIN_STEPS=${GPU_CHECK_TRAIN_STEPS:-200}
# The largest .device-bin we accept: the device tool carries at most 64 MiB with the working tree.
BIN_BUDGET_MIB=40

die() {
    echo "gpu-check: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------------- prepare (here)

# "package target" of every test target whose source lists GPU tests.
gpu_test_targets() {
    cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "test" in target["kind"] and "on_gpu!" in open(target["src_path"]).read():
            print(package["name"], target["name"])'
}

# Paths of the executables cargo reports building (reads cargo's JSON messages).
executables() {
    python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        print(message["target"]["name"], message["executable"])'
}

# The kernel test binaries: every kernel of kernels/*.ptx is launched by one of them.
SANITIZED_PACKAGE=diffuse-cuda-kernels

prepare() {
    [[ $(uname -m) == x86_64 ]] || die "the GPU machine is x86-64; build there or on an x86-64 machine"
    rm -rf "$BIN"
    mkdir -p "$BIN"
    local manifest=$BIN/MANIFEST commit
    commit=$(git rev-parse HEAD)
    [[ -z $(git status --porcelain --untracked-files=no) ]] || commit="$commit+uncommitted-changes"
    {
        echo "commit $commit"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(rustc --version)"
    } >"$manifest"
    local package target name path
    while read -r package target; do
        while read -r name path; do
            [[ $name == "$target" ]] || continue
            local short=${package#diffuse-}.$target
            cp "$path" "$BIN/$short"
            echo "test $short" >>"$manifest"
            [[ $package == "$SANITIZED_PACKAGE" ]] && echo "sanitize $short" >>"$manifest"
        done < <(cargo test --release --no-run -p "$package" --test "$target" --message-format=json-render-diagnostics |
            executables)
    done < <(gpu_test_targets)
    grep -q '^test ' "$manifest" || die "no GPU test binary was built"
    while read -r name path; do
        [[ $name == cuda_bench ]] && cp "$path" "$BIN/cuda_bench"
    done < <(cargo bench --no-run -p diffuse-cuda-kernels --bench cuda_bench --message-format=json-render-diagnostics |
        executables)
    echo "bench cuda_bench" >>"$manifest"
    cargo build --release -p diffuse-cli
    cp target/release/diffuse "$BIN/diffuse"
    echo "cli diffuse" >>"$manifest"
    find "$BIN" -type f ! -name MANIFEST -exec strip {} +
    local kib
    kib=$(du -sk "$BIN" | cut -f1)
    echo "size $((kib / 1024)) MiB" >>"$manifest"
    ((kib <= BIN_BUDGET_MIB * 1024)) || die "$BIN is $((kib / 1024)) MiB, over the $BIN_BUDGET_MIB MiB budget"
    echo "gpu-check: packed $BIN ($((kib / 1024)) MiB):"
    du -h "$BIN"/*
    print_run_call
}

# Tracked and untracked-not-ignored files, plus .device-bin: what the device tool sends.
carried_mib() {
    local tree bin
    tree=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    bin=$(du -sk "$BIN" | cut -f1)
    echo $(((tree + bin) / 1024))
}

print_run_call() {
    local mib
    mib=$(carried_mib)
    ((mib < 64)) || die "the working tree with $BIN is $mib MiB; the device tool carries at most 64"
    cat <<EOF

The device machine's half, as one call of the device tool (it sends this checkout, $mib MiB with $BIN; run
'prepare' in the checkout the session was started in, since that is the one the tool sends):

  run(command="bash scripts/gpu-check.sh there \"\$OUT\"", carry=["$BIN"], timeout_s=560)

It stops starting parts after ${DEADLINE} s and packs OUT/summary.txt and OUT/logs.tar.gz (about a minute more
for the machine's start). Afterwards, here:  bash scripts/gpu-check.sh unpack FILES_AT
EOF
}

# --------------------------------------------------------------------------------------------------- there (device)

# The binaries of one MANIFEST role.
role() { awk -v r="$1" '$1 == r { print $2 }' "$BIN/MANIFEST"; }

# Seconds left before the running part's own deadline.
left() { echo $((PART_END - SECONDS)); }

# Runs a command with the seconds the part has left (at least 1).
within() {
    local seconds
    seconds=$(left)
    ((seconds > 0)) || seconds=1
    timeout --kill-after=5 "$seconds" "$@"
}

find_sanitizer() {
    command -v compute-sanitizer && return
    local candidate
    for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/compute-sanitizer/compute-sanitizer \
        /opt/nvidia/*/compute-sanitizer; do
        [[ -x $candidate ]] && echo "$candidate" && return
    done
    return 1
}

part_env() {
    grep -E '^(commit|built|size)' "$BIN/MANIFEST"
    echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    uname -a
    echo "cores $(nproc)"
    free -g | head -2
    within nvidia-smi || echo "nvidia-smi: not available"
    within nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    ldconfig -p 2>/dev/null | grep -E 'libcuda\.so' || echo "libcuda.so: not in the loader cache"
    ldconfig -p 2>/dev/null | grep -E 'libnccl\.so' || echo "libnccl.so: not in the loader cache"
    local sanitizer
    if sanitizer=$(find_sanitizer); then within "$sanitizer" --version | tail -1; else echo "compute-sanitizer: not found"; fi
    within python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' ||
        echo "python3: no working torch"
    within "$BIN/diffuse" info --devices 2>&1 | tee "$WORK/devices.txt"
    grep -q '^cuda:0: .*; opens' "$WORK/devices.txt"
}

part_tests() {
    local status=0 binary
    for binary in $(role test); do
        echo "== $binary"
        within "$BIN/$binary" --test-threads "$(nproc)" || status=1
    done
    return $status
}

part_train() {
    local args=(--config fashion-small --data data/fashion-mnist --steps "$TRAIN_STEPS" --batch-size 32 --seed 0
        --log-every 1 --sample-every 0 --checkpoint-every 0 --grid-columns 1 --grid-steps 2)
    local threads=$((($(nproc) + 1) / 2)) runs=$WORK/train
    rm -rf "$runs"
    mkdir -p "$runs"
    # the two CPU runs share the cores while the GPU run needs one; all three start together
    RAYON_NUM_THREADS=$threads within "$BIN/diffuse" train --device cpu --out "$runs/cpu" "${args[@]}" \
        >"$runs/cpu.log" 2>&1 &
    local cpu=$!
    # the learning rate one f32 ulp above the default 0.002: how far a rounding-sized difference carries
    RAYON_NUM_THREADS=$threads within "$BIN/diffuse" train --device cpu --lr 0.0020000003 --out "$runs/control" \
        "${args[@]}" >"$runs/control.log" 2>&1 &
    local control=$!
    local status=0
    echo "== diffuse train --device cuda ${args[*]}"
    within "$BIN/diffuse" train --device cuda --out "$runs/cuda" "${args[@]}" 2>&1 || status=1
    echo "== diffuse train --device cuda --precision bf16 (the same run)"
    within "$BIN/diffuse" train --device cuda --precision bf16 --out "$runs/cuda-bf16" "${args[@]}" 2>&1 || status=1
    wait $cpu || { echo "the CPU run failed:"; status=1; }
    wait $control || { echo "the CPU control run failed:"; status=1; }
    for run in cpu control; do
        echo "== diffuse train --device cpu ($run)"
        tail -3 "$runs/$run.log"
    done
    for run in cuda cuda-bf16 cpu control; do
        [[ -f $runs/$run/metrics.jsonl ]] && cp "$runs/$run/metrics.jsonl" "$WORK/train-$run-metrics.jsonl"
    done
    echo "== loss curves, cuda against cpu (the control is the cpu run with the lr one ulp higher)"
    python3 scripts/gpu-check/compare_losses.py "$runs/cuda" "$runs/cpu" "$runs/control" || status=1
    echo "== loss curves, cuda bf16 against cuda f32"
    python3 scripts/gpu-check/compare_losses.py --bf16 "$runs/cuda-bf16" "$runs/cuda" || status=1
    rm -rf "$runs"
    return $status
}

part_bench() {
    local status=0
    echo "== cuda_bench"
    within "$BIN/cuda_bench" 2>&1 | tee "$WORK/bench-diffuse.txt" || status=1
    grep -q '^device 0: ' "$WORK/bench-diffuse.txt" || { echo "cuda_bench timed nothing"; status=1; }
    echo "== benches/peers/torch_cuda.py"
    PYTHONUNBUFFERED=1 within python3 benches/peers/torch_cuda.py 2>&1 | tee "$WORK/bench-torch.txt" || status=1
    echo "== side by side (speed = PyTorch's time / diffuse's)"
    python3 scripts/gpu-check/bench_table.py "$WORK/bench-diffuse.txt" "$WORK/bench-torch.txt" || status=1
    return $status
}

# compute-sanitizer TOOL on every kernel test binary, one proptest case per property; each binary gets an equal share
# of the time left.
sanitize() {
    local tool=$1 sanitizer
    sanitizer=$(find_sanitizer) || { echo "compute-sanitizer not found"; return 1; }
    local binaries status=0 count binary
    mapfile -t binaries < <(role sanitize)
    count=${#binaries[@]}
    for binary in "${binaries[@]}"; do
        local share=$(($(left) / count))
        count=$((count - 1))
        echo "== compute-sanitizer --tool $tool $binary (at most $share s)"
        PROPTEST_CASES=1 timeout --kill-after=5 "$((share > 1 ? share : 1))" \
            "$sanitizer" --tool "$tool" --error-exitcode 86 --print-limit 30 "$BIN/$binary" --test-threads "$(nproc)" ||
            status=1
    done
    return $status
}
part_memcheck() { sanitize memcheck; }
part_racecheck() { sanitize racecheck; }
part_synccheck() { sanitize synccheck; }
part_initcheck() { sanitize initcheck; }

# One line of the summary for a part, from its log.
detail() {
    local part=$1 log=$2
    case $part in
    tests)
        awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d ignored", p, f, i }' "$log"
        ;;
    train) grep -E '^(agree|DISAGREE|compare_losses)' "$log" | cut -d: -f1 | paste -sd' ' | cut -c1-110 ;;
    bench) printf '%s targets met, %s missed' "$(grep -cE 'met$' "$log")" "$(grep -cE 'MISSED$' "$log")" ;;
    memcheck | racecheck | synccheck | initcheck)
        grep -hoE 'ERROR SUMMARY: [0-9]+ error' "$log" |
            awk '{ e += $3 } END { if (NR) printf "%d errors in %d runs", e, NR; else printf "no ERROR SUMMARY: see the log" }'
        ;;
    env) grep -m1 '^cuda:0' "$log" | cut -c1-110 || echo "no cuda:0" ;;
    esac
}

# Clips a log over 4 MiB to its first and last 2 MiB (the device tool returns files of at most 16 MiB).
clip() {
    local log=$1
    (($(stat -c %s "$log") > 4 << 20)) || return 0
    { head -c $((2 << 20)) "$log"; printf '\n[... clipped by gpu-check ...]\n'; tail -c $((2 << 20)) "$log"; } >"$log.clipped"
    mv "$log.clipped" "$log"
}

pack() {
    local out=$1
    tar -czf "$out/logs.tar.gz.partial" -C "$WORK" --exclude=train --exclude=devices.txt .
    mv "$out/logs.tar.gz.partial" "$out/logs.tar.gz"
    cp "$WORK/summary.txt" "$out/summary.txt"
}

there() {
    local out=${1:?usage: gpu-check.sh there OUT [PART...]}
    shift
    local parts=("$@")
    ((${#parts[@]})) || parts=("${PARTS[@]}")
    [[ -f $BIN/MANIFEST ]] || die "no $BIN/MANIFEST: run 'prepare' here and carry $BIN"
    mkdir -p "$out"
    WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
    export DIFFUSE_REQUIRE_GPU=1
    # the driver's folder where it is mounted rather than installed (cudarc looks for libcuda.so by name)
    local dir
    for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
        [[ -e $dir/libcuda.so.1 || -e $dir/libcuda.so ]] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    # NCCL (the tensor crate's cuda_nccl tests) from PyTorch's nvidia-nccl wheel when no system libnccl is installed
    if ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so'; then
        dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null) &&
            [[ -e $dir/libnccl.so.2 ]] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    local start=$SECONDS number=0 failed=0 part
    {
        grep -E '^commit' "$BIN/MANIFEST"
        printf '%-10s %-8s %5s  %s\n' part status secs detail
    } >"$WORK/summary.txt"
    for part in "${parts[@]}"; do
        [[ -v CAP[$part] ]] || die "unknown part '$part' (parts: ${PARTS[*]})"
        number=$((number + 1))
        local log remaining status t0=$SECONDS rc
        log=$WORK/$(printf '%02d' $number)-$part.log
        remaining=$((DEADLINE - (SECONDS - start)))
        if ((remaining < 10)); then
            echo "not run: the ${DEADLINE} s of the whole check were spent" >"$log"
            printf '%-10s %-8s %5s  %s\n' "$part" SKIPPED 0 "no time left" >>"$WORK/summary.txt"
            failed=1
            continue
        fi
        PART_END=$((SECONDS + (CAP[$part] < remaining ? CAP[$part] : remaining)))
        echo "gpu-check: $part (at most $((PART_END - SECONDS)) s)"
        set +e
        ("part_$part") >"$log" 2>&1
        rc=$?
        set -e
        if ((rc == 0)); then status=PASS; elif ((SECONDS >= PART_END)); then status=TIMEOUT; else status=FAIL; fi
        ((rc == 0)) || failed=1
        clip "$log"
        printf '%-10s %-8s %5d  %s\n' "$part" "$status" $((SECONDS - t0)) "$(detail "$part" "$log" 2>/dev/null)" \
            >>"$WORK/summary.txt"
        pack "$out"
    done
    echo "total $((SECONDS - start)) s" >>"$WORK/summary.txt"
    pack "$out"
    cat "$WORK/summary.txt"
    rm -rf "$WORK"
    return $failed
}

# -------------------------------------------------------------------------------------------------- unpack (here)

unpack() {
    local from=${1:?usage: gpu-check.sh unpack DIR (the fetched summary.txt and logs.tar.gz)}
    [[ -f $from/summary.txt && -f $from/logs.tar.gz ]] || die "$from lacks summary.txt or logs.tar.gz"
    local scratch commit device date
    scratch=$(mktemp -d)
    tar -xzf "$from/logs.tar.gz" -C "$scratch"
    commit=$(awk '$1 == "commit" { print substr($2, 1, 12) }' "$from/summary.txt")
    date=$(grep -m1 -hoE '^date [0-9-]+' "$scratch"/*-env.log 2>/dev/null | cut -d' ' -f2 || true)
    device=$(grep -m1 -hoE '^cuda:0: [^,]+' "$scratch"/*-env.log 2>/dev/null | cut -d' ' -f2- | tr -c 'A-Za-z0-9\n' '-' || true)
    local dest=docs/bench/gpu-check/${date:-undated}-${device:-unknown-device}-${commit:-unknown-commit}
    mkdir -p "$dest"
    cp "$scratch"/* "$dest"/
    cp "$from/summary.txt" "$dest/summary.txt"
    rm -rf "$scratch"
    echo "gpu-check: unpacked into $dest"
    cat "$dest/summary.txt"
}

# ------------------------------------------------------------------------------------------------ rehearse (here)

# Asserts that FILE contains PATTERN (extended regex), naming what it shows.
expect() {
    local file=$1 pattern=$2 what=$3
    grep -qE -- "$pattern" "$file" || die "rehearsal: $what: /$pattern/ not in $(basename "$file")"
    echo "  ok: $what"
}

rehearse() {
    command -v nvidia-smi >/dev/null && die "this machine has nvidia-smi: run 'there' instead of rehearsing"
    prepare
    local out fake logs
    out=$(mktemp -d)
    logs=$(mktemp -d)
    echo
    echo "gpu-check: rehearsing the device half without a GPU (each part must fail, and say why)"
    # the command line the device runs, in a process of its own, with 3 training steps instead of 200
    set +e
    GPU_CHECK_TRAIN_STEPS=3 bash scripts/gpu-check.sh there "$out" >"$logs/there.txt" 2>&1
    local rc=$?
    set -e
    cat "$logs/there.txt"
    ((rc != 0)) || die "rehearsal: the there-half passed without a GPU"
    # the device tool returns at most 8 files of 16 MiB, 2 folders deep, named in [A-Za-z0-9._-]
    [[ $(find "$out" -type f | wc -l) -eq 2 && -f $out/summary.txt && -f $out/logs.tar.gz ]] ||
        die "rehearsal: OUT holds $(ls "$out") instead of summary.txt and logs.tar.gz"
    (($(stat -c %s "$out/logs.tar.gz") < 16 << 20)) || die "rehearsal: logs.tar.gz is over 16 MiB"
    echo "  ok: OUT holds summary.txt and logs.tar.gz ($(stat -c %s "$out/logs.tar.gz") bytes)"
    tar -xzf "$out/logs.tar.gz" -C "$logs"
    local part number=0
    for part in "${PARTS[@]}"; do
        number=$((number + 1))
        [[ -f $logs/$(printf '%02d' $number)-$part.log ]] || die "rehearsal: no log of $part"
    done
    echo "  ok: one log per part"
    expect "$logs/01-env.log" 'cuda: no CUDA driver' "env reports the missing driver"
    expect "$logs/02-tests.log" 'DIFFUSE_REQUIRE_GPU=1 but there is no GPU' "GPU tests fail, not skip, where a GPU is required"
    expect "$logs/02-tests.log" 'test result: FAILED' "a test binary without its GPU fails"
    expect "$logs/03-train.log" 'cuda:0 is unavailable' "train on cuda says the device is unavailable"
    expect "$logs/03-train.log" 'metrics.jsonl is missing' "the loss comparison refuses a run that did not happen"
    [[ $(wc -l <"$logs/train-cpu-metrics.jsonl") -eq 3 && $(wc -l <"$logs/train-control-metrics.jsonl") -eq 3 ]] ||
        die "rehearsal: the CPU runs did not log 3 steps each"
    echo "  ok: the CPU and control runs trained and logged every step"
    python3 scripts/gpu-check/compare_losses.py "$out" "$out" "$out" >/dev/null 2>&1 &&
        die "rehearsal: compare_losses accepted folders without metrics"
    mkdir -p "$logs/cpu" "$logs/control"
    cp "$logs/train-cpu-metrics.jsonl" "$logs/cpu/metrics.jsonl"
    cp "$logs/train-control-metrics.jsonl" "$logs/control/metrics.jsonl"
    python3 scripts/gpu-check/compare_losses.py "$logs/cpu" "$logs/cpu" "$logs/control" >/dev/null ||
        die "rehearsal: compare_losses refused a run compared with itself"
    echo "  ok: compare_losses accepts a run against itself"
    expect "$logs/04-bench.log" 'nothing to time' "cuda_bench says it timed nothing"
    expect "$logs/04-bench.log" 'cuda_bench timed nothing' "the bench part fails when nothing was timed"
    for part in memcheck racecheck synccheck initcheck; do
        number=$(printf '%s\n' "${PARTS[@]}" | grep -nx "$part" | cut -d: -f1)
        expect "$logs/$(printf '%02d' "$number")-$part.log" 'compute-sanitizer not found' "$part needs compute-sanitizer"
    done
    expect "$out/summary.txt" '^tests +FAIL' "the summary marks the tests failed"

    echo
    echo "gpu-check: the packed binaries on a fake driver whose device cannot JIT the kernels"
    fake=$(mktemp -d)
    cc -shared -fPIC -O1 -o "$fake/libcuda.so" crates/cuda-kernels/tests/fake_driver/libcuda.c
    local first
    first=$(role test | head -1)
    set +e
    FAKE_CUDA_MODE=bad-ptx LD_LIBRARY_PATH=$fake "$BIN/$first" >"$logs/fake-tests.txt" 2>&1
    rc=$?
    set -e
    ((rc != 0)) || die "rehearsal: $first passed on a device that cannot JIT its kernels"
    expect "$logs/fake-tests.txt" 'cannot run the kernels: .*CUDA_ERROR_INVALID_PTX' "$first fails with the driver's message"
    set +e
    FAKE_CUDA_MODE=bad-ptx LD_LIBRARY_PATH=$fake "$BIN/cuda_bench" >"$logs/fake-bench.txt" 2>&1
    rc=$?
    set -e
    ((rc == 1)) || die "rehearsal: cuda_bench exited $rc on a device that cannot JIT its kernels"
    echo "  ok: cuda_bench exits 1 on that device"
    FAKE_CUDA_MODE=bad-ptx LD_LIBRARY_PATH=$fake "$BIN/diffuse" info --devices >"$logs/fake-info.txt" 2>&1
    expect "$logs/fake-info.txt" '^cuda:0: Fake GPU.*cannot be used' "diffuse info --devices lists the device and why it fails"
    expect "$logs/fake-info.txt" '^warning: cuda:0 is present but cannot run' "--device auto warns before falling back"
    "$BIN/$first" >"$logs/no-driver.txt" 2>&1 || die "rehearsal: $first failed without a driver and without DIFFUSE_REQUIRE_GPU"
    expect "$logs/no-driver.txt" 'test result: ok\. 0 passed; 0 failed; [1-9][0-9]* ignored' "without a driver the GPU tests are counted ignored"
    rm -rf "$out" "$logs" "$fake"
    echo
    echo "gpu-check: rehearsal passed: the binaries are packed, the command line runs every part, and every part"
    echo "failed for want of a GPU, as it must."
    print_run_call
}

case ${1:-} in
prepare) prepare ;;
rehearse) rehearse ;;
there)
    shift
    there "$@"
    ;;
unpack) unpack "${2:-}" ;;
*) die "usage: gpu-check.sh prepare | rehearse | there OUT [PART...] | unpack DIR" ;;
esac
