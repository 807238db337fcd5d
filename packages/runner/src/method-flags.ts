import type { FineTuningMethod } from '@badam/core';

/** Flags (canonical names) that only some methods take, and which. */
export const METHOD_FLAGS: Readonly<Record<string, readonly FineTuningMethod[]>> = {
  switch_block_every: ['block', 'sparse'],
  start_block: ['block'],
  update_ratio: ['sparse'],
  mask_mode: ['sparse'],
};

/** True when `method` takes `flag` (a canonical name); flags in no row of {@link METHOD_FLAGS} are for every method. */
export function methodAccepts(
  method: FineTuningMethod,
  flag: string,
  extra: Readonly<Record<string, readonly FineTuningMethod[]>> = {},
): boolean {
  const methods = extra[flag] ?? METHOD_FLAGS[flag];
  return methods === undefined || methods.includes(method);
}
