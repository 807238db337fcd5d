import { describe, expect, it } from 'vitest';
import { Device } from '../src/index.js';

describe('caching allocator: exact accounting by kind, reuse, cache release', () => {
  it('accounts each kind exactly and reuses freed blocks without new device allocations', () => {
    const device = Device.cpu();
    const weights = device.zeros([1000], 'bfloat16', 'weights'); // 2000 bytes
    const masters = device.zeros([1000], 'float32', 'masters'); // 4000
    const moments = [
      device.zeros([1000], 'float32', 'optimizerState'),
      device.zeros([1000], 'float32', 'optimizerState'),
    ];
    let stats = device.memory();
    expect(stats.byKind).toMatchObject({ weights: 2000, masters: 4000, optimizerState: 8000, gradients: 0 });
    expect(stats.inUse).toBe(14000);
    expect(stats.deviceAllocations).toBe(4);
    const reservedBefore = stats.reserved;

    // A block switch: the state of one layer goes, the same shapes come back for the next.
    masters.free();
    for (const m of moments) m.free();
    stats = device.memory();
    expect(stats.byKind).toMatchObject({ weights: 2000, masters: 0, optimizerState: 0 });
    expect(stats.cached).toBeGreaterThanOrEqual(12000);
    expect(stats.reserved).toBe(reservedBefore); // back in the pool, not returned to the device
    const again = [
      device.zeros([1000], 'float32', 'masters'),
      device.zeros([1000], 'float32', 'optimizerState'),
      device.zeros([1000], 'float32', 'optimizerState'),
    ];
    stats = device.memory();
    expect(stats.deviceAllocations).toBe(4); // all three were pool hits
    expect(stats.byKind).toMatchObject({ masters: 4000, optimizerState: 8000 });
    expect(stats.peakInUse).toBe(14000);

    for (const t of again) t.free();
    device.emptyCache();
    stats = device.memory();
    expect(stats.cached).toBe(0);
    expect(stats.inUse).toBe(2000);
    expect(stats.liveBlocks).toBe(1);
    weights.free();
    expect(device.memory().inUse).toBe(0);
  });

  it('does not hand a small request a much larger cached block', () => {
    const device = Device.cpu();
    device.zeros([4 << 20], 'float32', 'activations').free(); // 16 MiB cached
    device.zeros([100], 'float32', 'activations');
    const stats = device.memory();
    expect(stats.deviceAllocations).toBe(2);
    expect(stats.cached).toBe(16 << 20);
  });

  it('freeing twice is harmless; peaks can be reset', () => {
    const device = Device.cpu();
    const t = device.zeros([10], 'float32');
    t.free();
    t.free();
    expect(device.memory().peakInUse).toBe(40);
    device.resetPeaks();
    expect(device.memory().peakInUse).toBe(0);
  });
});
