#!/usr/bin/env bash
# Assemble every kernels/*.ptx with ptxas for sm_80 and sm_90 (-v prints registers, shared memory and spills).
# Fails on the first error. ptxas is taken from $PTXAS, then PATH, then the pip wheel `nvidia-cuda-nvcc`.
set -euo pipefail
cd "$(dirname "$0")/.."

find_ptxas() {
    if [[ -n "${PTXAS:-}" ]]; then echo "$PTXAS"; return; fi
    if command -v ptxas >/dev/null 2>&1; then command -v ptxas; return; fi
    local site
    site=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null || true)
    for candidate in "$site/nvidia/cu13/bin/ptxas" "$site/nvidia/cuda_nvcc/bin/ptxas"; do
        if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
    done
    echo "check-ptx: no ptxas found (set PTXAS, put it on PATH, or pip install nvidia-cuda-nvcc)" >&2
    exit 1
}

ptxas=$(find_ptxas)
"$ptxas" --version | tail -n 1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for ptx in kernels/*.ptx; do
    for arch in sm_80 sm_90; do
        echo "== $ptx ($arch)"
        if ! "$ptxas" -arch="$arch" -v --warning-as-error "$ptx" -o "$out/$(basename "$ptx" .ptx).$arch.cubin"; then
            echo "check-ptx: $ptx failed to assemble for $arch" >&2
            status=1
        fi
    done
done
exit $status
