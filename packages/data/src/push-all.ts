/**
 * Appends every item of each source to `target`. `target.push(...source)` passes each item as an argument,
 * so a text of a few hundred thousand tokens overflows the call stack ("Maximum call stack size
 * exceeded"); this loops instead.
 */
export function pushAll<T>(target: T[], ...sources: ReadonlyArray<readonly T[]>): void {
  for (const source of sources) for (const item of source) target.push(item);
}
