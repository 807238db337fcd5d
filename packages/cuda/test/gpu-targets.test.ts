import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cudaSources } from '../scripts/addon-sources.mjs';

// Which GPUs the built addon carries code for, read from the binary itself (as `cuobjdump --list-elf` /
// `--list-ptx` would, without needing cuobjdump): the .nv_fatbin section holds one fat binary per file nvcc
// compiled, each a list of entries, SASS (an ELF cubin) or PTX, tagged with its architecture. A change to
// scripts/build-addon.mjs's -gencode flags that drops a card fails here, on a machine with nvcc and no GPU.
const root = fileURLToPath(new URL('..', import.meta.url));
const addon = (createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string }).path(root);
const cudaBuild = !existsSync(join(dirname(addon), 'cuda-unavailable.txt'));

const SASS = [80, 86, 89, 90]; // A100; RTX 3090 / A10; RTX 4090 / L4 / L40S; H100 / H200
const FATBIN_MAGIC = 0xba55ed50;

/** The bytes of the ELF64 section `name` of `file`, or undefined. */
function elfSection(file: Buffer, name: string): Buffer | undefined {
  expect(file.readUInt32BE(0), 'ELF magic').toBe(0x7f454c46);
  const shoff = Number(file.readBigUInt64LE(0x28));
  const shentsize = file.readUInt16LE(0x3a);
  const shnum = file.readUInt16LE(0x3c);
  const header = (i: number) => shoff + i * shentsize;
  const strtab = Number(file.readBigUInt64LE(header(file.readUInt16LE(0x3e)) + 0x18));
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const at = strtab + file.readUInt32LE(h);
    if (file.toString('latin1', at, file.indexOf(0, at)) !== name) continue;
    const offset = Number(file.readBigUInt64LE(h + 0x18));
    return file.subarray(offset, offset + Number(file.readBigUInt64LE(h + 0x20)));
  }
  return undefined;
}

/** Each fat binary's entries as 'sm_XX' (SASS) or 'compute_XX' (PTX), in the order nvcc wrote them. */
function fatbinEntries(section: Buffer): string[][] {
  const fatbins: string[][] = [];
  let at = 0;
  while (at + 16 <= section.length) {
    if (section.readUInt32LE(at) !== FATBIN_MAGIC) {
      at += 8; // fat binaries are 8-byte aligned in the section
      continue;
    }
    const end = at + section.readUInt16LE(at + 6) + Number(section.readBigUInt64LE(at + 8));
    const entries: string[] = [];
    for (let e = at + section.readUInt16LE(at + 6); e < end; ) {
      const kind = section.readUInt16LE(e); // 1 PTX, 2 ELF
      const arch = section.readUInt32LE(e + 28);
      entries.push(kind === 2 ? `sm_${arch}` : kind === 1 ? `compute_${arch}` : `kind ${kind}`);
      e += section.readUInt32LE(e + 4) + Number(section.readBigUInt64LE(e + 8));
    }
    fatbins.push(entries);
    at = end;
  }
  return fatbins;
}

describe.skipIf(!cudaBuild)('the GPU code in the built addon', () => {
  it('every kernel file carries SASS for sm_80, sm_86, sm_89 and sm_90, and PTX for compute_90 and newer', () => {
    const section = elfSection(readFileSync(addon), '.nv_fatbin');
    expect(section, `${addon} has no .nv_fatbin section`).toBeDefined();
    const fatbins = fatbinEntries(section!);
    expect(fatbins).toHaveLength(cudaSources.length);
    for (const entries of fatbins) {
      expect(entries.filter((e) => e.startsWith('sm_')).sort()).toEqual(SASS.map((sm) => `sm_${sm}`));
      const ptx = entries.filter((e) => e.startsWith('compute_')).map((e) => Number(e.slice(8)));
      // compute_90's PTX is what every newer card (sm_100, sm_120, ...) compiles at load time.
      expect(ptx).toContain(90);
      expect(ptx.every((arch) => arch >= 90)).toBe(true);
    }
  });
});
