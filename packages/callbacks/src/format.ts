export { formatDuration } from '@badam/core';

/** Bytes as MB / GB with one or two decimals. */
export function formatMemory(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** A learning rate in compact scientific notation: 1.00e-5. */
export function formatLr(lr: number): string {
  return lr === 0 ? '0' : lr.toExponential(2);
}
