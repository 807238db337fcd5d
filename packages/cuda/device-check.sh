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
# $OUT/device-check.json. Nothing is built on the device.
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

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
OUT_FILE="${OUT:-/tmp}/device-check.json"
node packages/cuda/dist/src/cli/device-check.js --out "$OUT_FILE" "$@"
