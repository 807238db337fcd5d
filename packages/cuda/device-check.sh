#!/usr/bin/env bash
# Runs @badam/cuda's device check on a lent GPU machine (no Node, no build tools there). From the
# repository root, carrying what was built here:
#
#   ../shared/device/pack-node.sh                     # packs this machine's node into .device/
#   run: bash packages/cuda/device-check.sh           # carry: .device packages/cuda/build packages/cuda/dist
#                                                     #        packages/core/dist packages/safetensors/dist
#                                                     #        node_modules/.pnpm/node-gyp-build@4.8.4
#
# It sets up node, the workspace links and cuBLAS (bench/device-env.sh), runs every kernel on the GPU
# against its CPU reference, the backend against the CPU device, and the timings (the exact GEMM shapes
# of the 8B and TinyLlama steps included), and writes $OUT/device-check.json. Nothing is built on the device.
set -euo pipefail
cd "$(dirname "$0")/../.."
source packages/cuda/bench/device-env.sh
badam_device_env
node --version
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
OUT_FILE="${OUT:-/tmp}/device-check.json"
node packages/cuda/dist/src/cli/device-check.js --out "$OUT_FILE" "$@"
