/** `H:MM:SS`, as LLaMA-Factory's trainer_log.jsonl writes elapsed and remaining time. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '0:00:00';
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

/** Bytes as MB / GB with one or two decimals. */
export function formatMemory(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** A learning rate in compact scientific notation: 1.00e-5. */
export function formatLr(lr: number): string {
  return lr === 0 ? '0' : lr.toExponential(2);
}
