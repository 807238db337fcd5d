#!/usr/bin/env bash
# The GPU Llama benchmark in ONE device call, on a lent GPU machine (no Node, no build tools there):
#   0. the self-check, before anything is timed: one BAdam step of small Llamas (GQA, head dims 64 and 128,
#      padded rows) on the GPU and on the CPU device from the same weights and batch; the loss and every
#      gradient of the active block must agree within bf16 tolerance, else the run stops here, printing the
#      worst mismatches -> self-check.json
#   1. the device check (every kernel against its C++ reference, the backend, the step's GEMM shapes and the
#      kernels timed) -> device-check.json
#   2. the PyTorch peer, torch_badam.py, BAdam on TinyLlama-1.1B (4 x 512) and Llama 3-8B (2 x 512) -> peer.jsonl
#   3. ours, bench/llama-train.js, the same two workloads, each stopping if its first loss is not near
#      ln(vocab) -> ours.jsonl
#   4. summary.md: ours against the peer (tokens/s and peak memory as ratios), and gpu-run.log
# Everything lands in $OUT (at most 8 files come back; this writes 6). Each part gets what is left of a
# time budget (GPU_RUN_BUDGET_S, default 540 s) so that the call ends inside the device tool's 10 minutes
# even when a part hangs. It depends on no other script having run (bench/device-env.sh sets up node, the
# workspace links and cuBLAS). The exact `run` invocation (what to build, pack and carry) is in
# packages/cuda/README.md, "The GPU Llama benchmark".
#
#   bash packages/cuda/bench/gpu-run.sh             # on the GPU machine
#   bash packages/cuda/bench/gpu-run.sh --dry-run   # here or in CI: the same script with this machine's node,
#                                                   # the CPU device and the tiny size; no peer (no GPU)
set -uo pipefail
cd "$(dirname "$0")/../../.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
export OUT="${OUT:-/tmp/gpu-run}"
mkdir -p "$OUT"
LOG="$OUT/gpu-run.log"
exec > >(tee -a "$LOG") 2>&1
TEE=$!
START=$(date +%s)
BUDGET="${GPU_RUN_BUDGET_S:-540}"

# Seconds for the next part: its cap, or what is left of the budget (less 15 s to write the summary).
slot() {
  local cap=$1 left=$((BUDGET - ($(date +%s) - START) - 15))
  ((left < cap)) && cap=$left
  ((cap < 1)) && cap=1
  echo "$cap"
}

export BADAM_DEVICE_ENV_DRY=$DRY
source packages/cuda/bench/device-env.sh
badam_device_env || exit 2
# The PyTorch peer: the checkout's shared/ (carried), else the shared folder beside the repository.
PEER=""
for p in shared/bench/torch_badam.py ../shared/bench/torch_badam.py; do [ -f "$p" ] && { PEER=$p; break; }; done
echo "gpu-run: node $(node --version), peer ${PEER:-not found}, budget ${BUDGET} s"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
DRY_FLAG=()
[ "$DRY" = 1 ] && DRY_FLAG=(--dry-run)

# 0. The self-check: nothing is timed unless a BAdam step here agrees with the CPU device's.
timeout "$(slot 120)" node packages/cuda/dist/bench/llama-train.js --self-check-only "${DRY_FLAG[@]}" > "$OUT/self-check.json"
CHECK=$?
echo "gpu-run: self-check exit $CHECK"
if [ "$CHECK" != 0 ]; then
  printf '# GPU Llama benchmark: @badam/cuda against the PyTorch peer\n\nself-check FAILED (exit %s): a BAdam step on the GPU differs from the CPU device'"'"'s (see gpu-run.log); nothing was timed.\n' "$CHECK" > "$OUT/summary.md"
  cat "$OUT/summary.md"
  echo "gpu-run: stopped by the self-check after $(($(date +%s) - START)) s"
  exec >&- 2>&-
  wait "$TEE" 2> /dev/null || true
  exit 1
fi

# 1. The device check.
if [ "$DRY" = 1 ]; then
  timeout "$(slot 150)" node packages/cuda/dist/src/cli/device-check.js --dry-run --quick --out "$OUT/device-check.json" > /dev/null
else
  timeout "$(slot 150)" node packages/cuda/dist/src/cli/device-check.js --out "$OUT/device-check.json" > /dev/null
fi
echo "gpu-run: device check exit $?"

# 2 and 3, smaller workload first, ours then the peer's for each, so that a late timeout loses the least.
: > "$OUT/ours.jsonl"
: > "$OUT/peer.jsonl"
RUNS=("tinyllama-1.1b 4 512" "llama3-8b 2 512")
[ "$DRY" = 1 ] && RUNS=("tiny 2 16")
for run in "${RUNS[@]}"; do
  set -- $run
  if [ "$DRY" = 1 ]; then
    timeout "$(slot 200)" node packages/cuda/dist/bench/llama-train.js --dry-run --self-check-done >> "$OUT/ours.jsonl"
  else
    timeout "$(slot 200)" node packages/cuda/dist/bench/llama-train.js --self-check-done --config "$1" --batch "$2" --seq "$3" >> "$OUT/ours.jsonl"
  fi
  OURS=$?
  echo "gpu-run: ours $1 exit $OURS"
  [ "$OURS" = 1 ] && echo "gpu-run: ours $1 stopped: its first loss is not near ln(vocab) (see above)"
  if [ "$DRY" = 1 ]; then
    echo "gpu-run: peer $1 skipped in a dry run (it needs the GPU)"
  elif [ -n "$PEER" ]; then
    PYTHONUNBUFFERED=1 timeout "$(slot 150)" python3 "$PEER" --config "$1" --mode badam --batch "$2" --seq "$3" >> "$OUT/peer.jsonl"
    echo "gpu-run: peer $1 exit $?"
  else
    echo "gpu-run: peer $1 skipped: no torch_badam.py (copy ../shared/bench/torch_badam.py into shared/bench/ and carry shared)"
  fi
done

# 4. The summary: ratios ours / peer (tokens/s: higher is better; peak memory: lower is better). Node, not
#    Python: the dry run needs no Python at all.
CONFIGS=$(for run in "${RUNS[@]}"; do set -- $run; printf '%s,' "$1"; done)
node --input-type=module - "$OUT" "$CONFIGS" <<'JS'
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const [out, configs] = process.argv.slice(2);
const byConfig = (file) => {
  const rows = {};
  for (const line of readFileSync(join(out, file), 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const r = JSON.parse(line);
      rows[r.config] = r;
    } catch {}
  }
  return rows;
};
const ours = byConfig('ours.jsonl');
const peer = byConfig('peer.jsonl');
const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? (a / b).toFixed(2) : '-');
const rows = [
  '| config | batch x seq | ours tok/s | peer tok/s | ratio | ours peak GiB | peer peak GiB | ratio | ours fwd / bwd / opt | ours peak by kind (GiB) |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
for (const config of configs.split(',').filter(Boolean)) {
  const o = ours[config] ?? {};
  const p = peer[config] ?? {};
  const share = o.phase_share ?? {};
  const kinds = Object.entries(o.peak_gib_by_kind ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || '-';
  rows.push(
    `| ${config} | ${o.batch ?? p.batch ?? '-'} x ${o.seq ?? p.seq ?? '-'} | ${o.tok_s ?? o.error ?? '-'} | ${p.tok_s ?? p.error ?? '-'} | ${ratio(o.tok_s, p.tok_s)} | ` +
      `${o.peak_gib ?? '-'} | ${p.peak_gib ?? '-'} | ${ratio(o.peak_gib, p.peak_gib)} | ` +
      `${['forward', 'backward', 'optimizer'].map((k) => share[k] ?? '-').join(' / ')} | ${kinds} |`,
  );
}
let selfCheck = 'not run';
try {
  const line = readFileSync(join(out, 'self-check.json'), 'utf8').trim().split('\n').pop();
  const r = JSON.parse(line).selfCheck;
  const worst = Math.max(...r.cases.flatMap((c) => c.worst.map((w) => w.rel_error)));
  selfCheck = `${r.passed ? 'passed' : 'FAILED'} on ${r.device} (${r.cases.length} models, worst gradient rel error ${worst.toExponential(1)} <= ${r.tolerance.gradient})`;
} catch {}
let status = 'not run';
const check = join(out, 'device-check.json');
if (existsSync(check)) {
  try {
    const checks = JSON.parse(readFileSync(check, 'utf8')).checks ?? [];
    status = `${checks.filter((c) => c.ok).length}/${checks.length} kernel checks passed`;
  } catch {
    status = 'device-check.json unreadable';
  }
}
const text = `# GPU Llama benchmark: @badam/cuda against the PyTorch peer\n\nself-check: ${selfCheck}\n\ndevice check: ${status}\n\n${rows.join('\n')}\n`;
writeFileSync(join(out, 'summary.md'), text);
console.log(text);
JS
echo "gpu-run: done in $(($(date +%s) - START)) s"
# Let tee write the log's last lines before the call returns (what is left running is killed then).
exec >&- 2>&-
wait "$TEE" 2> /dev/null || true
