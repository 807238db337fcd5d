import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

/** A request for a path the board does not serve: outside the directories it was given, or malformed. */
export class PathRefusedError extends Error {
  override readonly name = 'PathRefusedError';
}

/**
 * The segments of a URL path, each percent-decoded, refusing anything that could leave the directory it is
 * resolved against: `..` and `.` (also encoded, `%2e%2e`), an encoded separator (`%2f`, `%5c`), a
 * backslash, a NUL byte, or undecodable escapes. Checked after decoding, so no encoding gets past.
 */
export function safeSegments(urlPath: string): string[] {
  const segments: string[] = [];
  for (const raw of urlPath.split('/')) {
    if (raw === '') continue;
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      throw new PathRefusedError(
        `refused ${JSON.stringify(urlPath)}: ${JSON.stringify(raw)} is not valid percent-encoding`,
      );
    }
    if (segment === '.' || segment === '..' || /[/\\\0]/.test(segment)) {
      throw new PathRefusedError(
        `refused ${JSON.stringify(urlPath)}: the segment ${JSON.stringify(segment)} would leave the served directory`,
      );
    }
    segments.push(segment);
  }
  return segments;
}

/** True when `path` is `root` or lies below it (both absolute and resolved). */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * The real path of `urlPath` under `root`, or a {@link PathRefusedError}: the segments must be safe
 * ({@link safeSegments}) and the file's real path (symbolic links followed) must stay inside `root`'s. A
 * missing file rejects with the file system's ENOENT error.
 */
export async function resolveInside(root: string, urlPath: string): Promise<string> {
  const realRoot = await realpath(root);
  const candidate = resolve(realRoot, ...safeSegments(urlPath));
  if (!isInside(realRoot, candidate)) {
    throw new PathRefusedError(`refused ${JSON.stringify(urlPath)}: it resolves outside ${realRoot}`);
  }
  const real = await realpath(candidate);
  if (!isInside(realRoot, real)) {
    throw new PathRefusedError(`refused ${JSON.stringify(urlPath)}: a link leads outside ${realRoot}`);
  }
  return real;
}
