import { embeddingPrefixOf, layerPrefixOf } from './parameter-roles.js';

/** Which non-layer parameters become blocks of their own. */
export interface InferBlockPrefixesOptions {
  /** Put the embedding parameters in a block of their own, placed where they first appear. Default false. */
  includeEmbedding?: boolean;
  /**
   * Put every other non-layer parameter (final norm, `lm_head`, pooler, classifier head, ...) in one last
   * block. The embedding never joins this block. Default false.
   */
  includeLmHead?: boolean;
}

/**
 * BAdam's default partition: one block per transformer layer, in the order the parameters are listed.
 *
 * A parameter whose name contains a layer container followed by an index (`layers.<i>.`,
 * `encoder.layer.<i>.`, GPT-2's `h.<i>.`, `blocks.<i>.`, `block.<i>.`) belongs to the block whose prefix is
 * the name up to and including that index (`model.layers.0.`). Embedding parameters (a segment containing
 * `embed`, or GPT-2's `wte` / `wpe`) form one block, placed where they first appear, only with
 * `includeEmbedding`. All other parameters form one last block, listed by their full names, only with
 * `includeLmHead`. Parameters in no block stay frozen.
 *
 * Unlike the PyTorch reference, the embedding is never put into the last block when only
 * `includeLmHead` is set.
 *
 * @returns one array of prefixes per block, in block order.
 *
 * @example
 * ```ts
 * inferBlockPrefixes(['model.embed_tokens.weight', 'model.layers.0.mlp.up_proj.weight',
 *   'model.layers.1.mlp.up_proj.weight', 'model.norm.weight', 'lm_head.weight'], { includeLmHead: true });
 * // [['model.layers.0.'], ['model.layers.1.'], ['model.norm.weight', 'lm_head.weight']]
 * ```
 */
export function inferBlockPrefixes(
  names: readonly string[],
  options: InferBlockPrefixesOptions = {},
): string[][] {
  const { includeEmbedding = false, includeLmHead = false } = options;
  const blocks: string[][] = [];
  const seenLayers = new Set<string>();
  let embeddingBlock: string[] | undefined;
  const others: string[] = [];

  for (const name of names) {
    const layer = layerPrefixOf(name);
    if (layer !== undefined) {
      if (!seenLayers.has(layer)) {
        seenLayers.add(layer);
        blocks.push([layer]);
      }
      continue;
    }
    const embedding = embeddingPrefixOf(name);
    if (embedding !== undefined) {
      if (!includeEmbedding) continue;
      if (embeddingBlock === undefined) {
        embeddingBlock = [];
        blocks.push(embeddingBlock);
      }
      if (!embeddingBlock.includes(embedding)) embeddingBlock.push(embedding);
      continue;
    }
    others.push(name);
  }
  if (includeLmHead && others.length > 0) blocks.push(others);
  return blocks;
}
