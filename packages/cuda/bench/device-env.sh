# Sourced (not run) by bench/gpu-run.sh and device-check.sh, from the repository root: what a run on a lent
# GPU machine needs before any node script starts, so that neither depends on the other having run first.
#   - node: this machine's, or the packed one (.device/node.xz, ../shared/device/pack-node.sh) unpacked to
#     /tmp/badam-node; BADAM_DEVICE_ENV_DRY=1 keeps the node on PATH (a dry run here or in CI);
#   - the built files every script imports, checked to be there (they are carried, not built there);
#   - the workspace links pnpm would make (node_modules is not carried), made only where they are missing;
#   - cuBLAS: dlopen'ed by name (libcublas.so.13); when the loader's cache does not know it, the first
#     folder that has it goes on LD_LIBRARY_PATH (the CUDA toolkit's, else the pip wheel's of python3).
# Returns (not exits) 2 with a message naming what is missing.
badam_device_env() {
  local node_dir=/tmp/badam-node/bin
  if [ "${BADAM_DEVICE_ENV_DRY:-0}" = 1 ] && command -v node > /dev/null; then
    node_dir=$(dirname "$(command -v node)")
  elif [ ! -x "$node_dir/node" ]; then
    [ -s .device/node.xz ] || { echo "device-env: no packed node (.device/node.xz): run ../shared/device/pack-node.sh here and carry .device" >&2; return 2; }
    mkdir -p "$node_dir"
    xz -d < .device/node.xz > "$node_dir/node" && chmod +x "$node_dir/node"
  fi
  export PATH="$node_dir:$PATH"
  local f
  for f in packages/cuda/build/Release/badam_cuda.node packages/cuda/dist/src/cli/device-check.js packages/cuda/dist/bench/llama-train.js \
    packages/core/dist/index.js packages/safetensors/dist/index.js node_modules/.pnpm/node-gyp-build@4.8.4/node_modules/node-gyp-build/index.js; do
    [ -e "$f" ] || { echo "device-env: $f is missing: build here (pnpm --filter @badam/cuda... build) and carry it" >&2; return 2; }
  done
  mkdir -p packages/cuda/node_modules/@badam packages/safetensors/node_modules/@badam
  [ -e packages/cuda/node_modules/@badam/core ] || ln -sfn ../../../core packages/cuda/node_modules/@badam/core
  [ -e packages/cuda/node_modules/@badam/safetensors ] || ln -sfn ../../../safetensors packages/cuda/node_modules/@badam/safetensors
  [ -e packages/safetensors/node_modules/@badam/core ] || ln -sfn ../../../core packages/safetensors/node_modules/@badam/core
  [ -e packages/cuda/node_modules/node-gyp-build ] || ln -sfn ../../../node_modules/.pnpm/node-gyp-build@4.8.4/node_modules/node-gyp-build packages/cuda/node_modules/node-gyp-build
  if ! ldconfig -p 2> /dev/null | grep -q 'libcublas\.so\.13'; then
    local d
    for d in ${CUDA_HOME:+$CUDA_HOME/lib64} /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
      $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s, "lib") for p in nvidia.__path__ for s in ("cu13", "cublas")))' 2> /dev/null); do
      if [ -e "$d/libcublas.so.13" ]; then
        export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "cuBLAS: $d/libcublas.so.13 (added to LD_LIBRARY_PATH)"
        break
      fi
    done
  fi
  return 0
}
