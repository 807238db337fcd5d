import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '@badam/core';
import { writeFileAtomic } from '@badam/safetensors';

/**
 * Makes `directory` ready for a run as Hugging Face's Trainer does: a non-empty directory is refused unless
 * the run overwrites it (old `checkpoint-N` folders are removed then) or resumes from it.
 */
export async function prepareOutputDir(
  directory: string,
  options: { overwrite: boolean; resuming: boolean },
): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(directory);
  } catch {
    entries = [];
  }
  if (entries.length > 0 && !options.overwrite && !options.resuming) {
    throw new UsageError(
      `output directory ${directory} exists and is not empty: pass --overwrite_output_dir to reuse it, --resume_from_checkpoint to continue its run, or another --output_dir`,
    );
  }
  if (options.overwrite) {
    for (const entry of entries)
      if (/^checkpoint-\d+$/.test(entry)) await rm(join(directory, entry), { recursive: true, force: true });
  }
  await mkdir(directory, { recursive: true });
}

/** JSON as Hugging Face writes its results (`all_results.json`, ...): sorted keys, 4-space indent, atomically. */
export async function writeResultsJson(path: string, value: unknown): Promise<void> {
  const sorted =
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)))
      : value;
  await writeFileAtomic(path, [`${JSON.stringify(sorted, null, 4)}\n`]);
}
