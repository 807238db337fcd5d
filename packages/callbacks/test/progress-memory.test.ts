import { describe, expect, it } from 'vitest';
import { formatMemoryReport } from '../src/index.js';

describe('formatMemoryReport', () => {
  it('shows the peak and the kinds that hold bytes, in short names', () => {
    expect(
      formatMemoryReport({
        bytes: 1.5e9,
        peakBytes: 2.25e9,
        byKind: { weights: 1.2e9, masters: 1e8, gradients: 1e8, optimizerState: 2e8, activations: 0 },
        source: 'cuda caching allocator',
      }),
    ).toBe('1.50 GB (peak 2.25 GB; w 1.20 GB, master 100.0 MB, grad 100.0 MB, adam 200.0 MB)');
    expect(formatMemoryReport({ bytes: 3e6, source: 'not reported' })).toBe('3.0 MB');
  });

  it("adds every rank's bytes in a run over several processes", () => {
    expect(
      formatMemoryReport({
        bytes: 3e6,
        byKind: { weights: 2e6 },
        source: 'cpu device caching allocator of rank 0 of 3',
        ranks: [{ bytes: 3e6 }, { bytes: 2.9e6 }, { bytes: 2.8e6, peakBytes: 4e6 }],
      }),
    ).toBe('3.0 MB (w 2.0 MB; ranks 3.0 MB / 2.9 MB / 2.8 MB)');
  });
});
