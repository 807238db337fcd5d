/** Matplotlib's tab10: the first ten runs' colours. */
const TAB10 = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#9467bd',
  '#ff7f0e',
  '#17becf',
  '#8c564b',
  '#e377c2',
  '#bcbd22',
  '#7f7f7f',
];

function hslToHex(h: number, s: number, l: number): string {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const channel = (n: number) => {
    const value = l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1));
    return Math.round(value * 255)
      .toString(16)
      .padStart(2, '0');
  };
  return `#${channel(0)}${channel(8)}${channel(4)}`;
}

/**
 * The colour of run (or group) `index`: tab10 for the first ten, then hues a golden angle apart at three
 * lightnesses, so no two of the first few dozen runs share a colour (the list no longer wraps after eight).
 */
export function runColor(index: number): string {
  if (index < TAB10.length) return TAB10[index]!;
  const n = index - TAB10.length;
  const hue = (n * 137.508 + 20) % 360;
  const lightness = [0.42, 0.3, 0.55][n % 3]!;
  return hslToHex(hue, 0.7, lightness);
}

/** `#rrggbb` with an alpha. */
export function withAlpha(color: string, alpha: number): string {
  const a = Math.round(alpha * 255)
    .toString(16)
    .padStart(2, '0');
  return `${color}${a}`;
}
