import { type InferBlockPrefixesOptions, inferBlockPrefixes } from './infer-block-prefixes.js';
import { isNormSegment, layerPrefixOf, owningModuleOf } from './parameter-roles.js';

/**
 * How finely to split each transformer layer into blocks:
 * - `layer`: one block per layer (BAdam's default; D = L, plus embedding / head blocks when included);
 * - `module`: the attention and the MLP of each layer apart, each with the norm that feeds it (D = 2L);
 * - `matrix`: each weight matrix of a layer apart, norms joining the matrix they feed (D = 7L for Llama:
 *   q, k, v, o, gate, up, down);
 * - `model`: one block holding every parameter (D = 1; `includeEmbedding` and `includeLmHead` do not
 *   apply). With `switchBlockEvery: -1` BAdam is then plain full-parameter training with the base
 *   optimizer, and in LoRA mode plain LoRA: the baselines run through the same engine.
 */
export type BlockPartitionPreset = 'layer' | 'module' | 'matrix' | 'model';

/** All presets, for validation and CLI help. */
export const BLOCK_PARTITION_PRESETS: readonly BlockPartitionPreset[] = [
  'layer',
  'module',
  'matrix',
  'model',
];

type SubLayerGroup = 'attention' | 'mlp';

/**
 * Which half of a layer a first sub-module segment belongs to. Norms go to the half they feed in a
 * pre-norm layer: `post_attention_layernorm` (Llama), `ln_2` (GPT-2) and feed-forward norms to the MLP;
 * `input_layernorm`, `ln_1` and the rest to attention. Other segments: attention when the name says
 * `attn` / `attention`, else MLP (`mlp`, `intermediate`, `output`, `feed_forward`, ...).
 */
function subLayerGroupOf(segment: string): SubLayerGroup {
  if (isNormSegment(segment)) {
    return /post_attention|ln_?2|ffn|feed_?forward|mlp/i.test(segment) ? 'mlp' : 'attention';
  }
  return /attn|attention/i.test(segment) ? 'attention' : 'mlp';
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

interface LayerModules {
  readonly layer: string;
  /** First-segment modules (`model.layers.0.self_attn.`) with their group, in order of appearance. */
  readonly subLayers: Array<{ prefix: string; group: SubLayerGroup }>;
  /** Owning modules (`model.layers.0.self_attn.q_proj.`) in order of appearance. */
  readonly owners: Array<{ prefix: string; group: SubLayerGroup; isNorm: boolean }>;
}

function collectLayerModules(names: readonly string[]): Map<string, LayerModules> {
  const layers = new Map<string, LayerModules>();
  for (const name of names) {
    const layer = layerPrefixOf(name);
    if (layer === undefined) continue;
    let entry = layers.get(layer);
    if (entry === undefined) {
      entry = { layer, subLayers: [], owners: [] };
      layers.set(layer, entry);
    }
    const rest = name.slice(layer.length);
    const firstSegment = rest.split('.')[0] ?? rest;
    const group = subLayerGroupOf(firstSegment);
    // A parameter directly under the layer (no sub-module) is its own "sub-layer" by full name.
    const subPrefix = rest.includes('.') ? `${layer}${firstSegment}.` : name;
    if (!entry.subLayers.some((s) => s.prefix === subPrefix))
      entry.subLayers.push({ prefix: subPrefix, group });
    const owner = owningModuleOf(name);
    const ownerPrefix = owner.length > layer.length ? owner : name;
    const ownerSegments = ownerPrefix.slice(layer.length).split('.').filter(Boolean);
    const isNorm = ownerSegments.length > 0 && isNormSegment(ownerSegments[ownerSegments.length - 1] ?? '');
    if (!entry.owners.some((o) => o.prefix === ownerPrefix))
      entry.owners.push({ prefix: ownerPrefix, group, isNorm });
  }
  return layers;
}

function moduleBlocks(layer: LayerModules): string[][] {
  const attention = layer.subLayers.filter((s) => s.group === 'attention').map((s) => s.prefix);
  const mlp = layer.subLayers.filter((s) => s.group === 'mlp').map((s) => s.prefix);
  return [attention, mlp].filter((b) => b.length > 0);
}

function matrixBlocks(layer: LayerModules): string[][] {
  const matrices = layer.owners.filter((o) => !o.isNorm);
  const blocks = matrices.map((m) => [m.prefix]);
  for (const norm of layer.owners.filter((o) => o.isNorm)) {
    const sameGroup = matrices.filter((m) => m.group === norm.group);
    const candidates = sameGroup.length > 0 ? sameGroup : matrices;
    if (candidates.length === 0) {
      blocks.push([norm.prefix]);
      continue;
    }
    let best = candidates[0]!;
    let bestLength = commonPrefixLength(best.prefix, norm.prefix);
    for (const m of candidates.slice(1)) {
      const length = commonPrefixLength(m.prefix, norm.prefix);
      if (length > bestLength) {
        best = m;
        bestLength = length;
      }
    }
    blocks[matrices.indexOf(best)]!.push(norm.prefix);
  }
  return blocks;
}

/**
 * Block prefixes for a {@link BlockPartitionPreset}. Non-layer parameters are handled exactly as by
 * {@link inferBlockPrefixes} (an embedding block with `includeEmbedding`, a last block with
 * `includeLmHead`); each layer block is split by module or by matrix.
 *
 * @example
 * ```ts
 * blockPrefixesForPreset(llamaNames, 'module');
 * // [['model.layers.0.self_attn.', 'model.layers.0.input_layernorm.'],
 * //  ['model.layers.0.mlp.', 'model.layers.0.post_attention_layernorm.'], ...]
 * ```
 */
export function blockPrefixesForPreset(
  names: readonly string[],
  preset: BlockPartitionPreset,
  options: InferBlockPrefixesOptions = {},
): string[][] {
  if (preset === 'model') return [[...names]];
  const byLayer = inferBlockPrefixes(names, options);
  if (preset === 'layer') return byLayer;
  const layers = collectLayerModules(names);
  const split = preset === 'module' ? moduleBlocks : matrixBlocks;
  return byLayer.flatMap((block) => {
    const layer = block.length === 1 ? layers.get(block[0]!) : undefined;
    return layer === undefined ? [block] : split(layer);
  });
}
