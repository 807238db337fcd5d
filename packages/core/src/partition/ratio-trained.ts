import { embeddingPrefixOf } from './parameter-roles.js';

/**
 * True when BlockOptimizerRatio trains the parameter: every parameter does, except the embedding (a name
 * with an embedding segment, see {@link embeddingPrefixOf}) unless `includeEmbedding`, and `lm_head` unless
 * `includeLmHead`. The one rule `@badam/ratio`'s masks and core's plan both follow.
 *
 * @example
 * ```ts
 * isTrainedByRatio('model.embed_tokens.weight'); // false
 * isTrainedByRatio('lm_head.weight', { includeLmHead: true }); // true
 * isTrainedByRatio('model.layers.0.mlp.up_proj.weight'); // true
 * ```
 */
export function isTrainedByRatio(
  name: string,
  options: { readonly includeEmbedding?: boolean; readonly includeLmHead?: boolean } = {},
): boolean {
  if (embeddingPrefixOf(name) !== undefined && options.includeEmbedding !== true) return false;
  if (name.includes('lm_head') && options.includeLmHead !== true) return false;
  return true;
}
