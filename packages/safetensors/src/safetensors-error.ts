/** A safetensors file (or index) that cannot be read: the message names the file and what is wrong. */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  constructor(
    /** The file the problem is in. */
    readonly path: string,
    problem: string,
  ) {
    super(`${path}: ${problem}`);
  }
}
