#!/usr/bin/env bash
# Runs @badam/cuda's device check on a lent GPU machine (no Node, no build tools there). From the
# repository root, carrying what was built here:
#
#   ../shared/device/pack-node.sh                     # packs this machine's node into .device/
#   run: bash packages/cuda/device-check.sh           # carry: .device packages/cuda/build packages/cuda/dist
#                                                     #        packages/core/dist packages/safetensors/dist
#                                                     #        node_modules/.pnpm/node-gyp-build@4.8.4
#
# It unpacks node to /tmp, links the workspace packages the check imports, runs every kernel on the GPU
# against its CPU reference, the backend against the CPU device, and the timings, and writes
# $OUT/device-check.json; then world size 1 through NCCL against one process on the same steps
# ($OUT/nccl-world-size-1.json). Nothing is built on the device.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODE_DIR=/tmp/badam-node/bin
if [ ! -x "$NODE_DIR/node" ]; then
  [ -s .device/node.xz ] || { echo "device-check: no packed node (.device/node.xz): run ../shared/device/pack-node.sh here and carry .device" >&2; exit 2; }
  mkdir -p "$NODE_DIR"
  xz -d < .device/node.xz > "$NODE_DIR/node"
  chmod +x "$NODE_DIR/node"
fi
export PATH="$NODE_DIR:$PATH"
node --version

for f in packages/cuda/build/Release/badam_cuda.node node_modules/.pnpm/node-gyp-build@4.8.4/node_modules/node-gyp-build/index.js packages/cuda/dist/src/cli/device-check.js packages/core/dist/index.js packages/safetensors/dist/index.js; do
  [ -e "$f" ] || { echo "device-check: $f is missing: build here (pnpm --filter @badam/cuda... build) and carry it" >&2; exit 2; }
done
# Workspace links as pnpm makes them (node_modules is not carried).
mkdir -p packages/cuda/node_modules/@badam packages/safetensors/node_modules/@badam
ln -sfn ../../../core packages/cuda/node_modules/@badam/core
ln -sfn ../../../safetensors packages/cuda/node_modules/@badam/safetensors
ln -sfn ../../../core packages/safetensors/node_modules/@badam/core
ln -sfn ../../../node_modules/.pnpm/node-gyp-build@4.8.4/node_modules/node-gyp-build packages/cuda/node_modules/node-gyp-build

# cuBLAS is dlopen'ed by name (libcublas.so.13): when the loader's cache does not know it, put the first
# directory that has it on LD_LIBRARY_PATH (the CUDA toolkit's, else the pip wheel's of the image's python3).
if ! ldconfig -p 2> /dev/null | grep -q 'libcublas\.so\.13'; then
  for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s, "lib") for p in nvidia.__path__ for s in ("cu13", "cublas")))' 2> /dev/null); do
    if [ -e "$d/libcublas.so.13" ]; then
      export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "cuBLAS: $d/libcublas.so.13 (added to LD_LIBRARY_PATH)"
      break
    fi
  done
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
OUT_FILE="${OUT:-/tmp}/device-check.json"
status=0
node packages/cuda/dist/src/cli/device-check.js --out "$OUT_FILE" "$@" || status=$?
# The NCCL path's first check: world size 1 through NCCL against the non-distributed path on the same BAdam
# steps (its losses and the collective libraries' status in nccl-world-size-1.json). NCCL is found as the
# addon finds it (the loader's path, NCCL_HOME, CUDA, a PyTorch wheel's nvidia/nccl/lib).
node packages/cuda/test/fixtures/world-size-1-check.mjs > "${OUT:-/tmp}/nccl-world-size-1.json" || status=$?
cat "${OUT:-/tmp}/nccl-world-size-1.json"
exit "$status"
