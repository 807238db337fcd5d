import { TRAINING_DEFAULTS } from '../defaults.js';
import { BadamOptionError, BadamPartitionError } from '../errors.js';
import { requireBoolean, requireStringArray } from '../validation.js';
import { isLoraParameter } from './parameter-roles.js';
import { BLOCK_PARTITION_PRESETS, type BlockPartitionPreset, blockPrefixesForPreset } from './presets.js';

/** How to split a model's parameters into BAdam blocks. */
export interface BlockPartitionOptions {
  /**
   * Explicit blocks: one array of name prefixes per block. A parameter belongs to a block when one of the
   * block's prefixes is a substring of its name (as in the reference). When absent, the blocks come from
   * `preset`.
   */
  blockPrefixList?: readonly (readonly string[])[];
  /** Inferred partition when `blockPrefixList` is absent. Default `'layer'`. */
  preset?: BlockPartitionPreset;
  /** With an inferred partition: a block for the embeddings. Default false. */
  includeEmbedding?: boolean;
  /** With an inferred partition: one last block for the final norm, `lm_head` and other non-layer parameters. */
  includeLmHead?: boolean;
  /** Prefixes of parameters trainable in every block (e.g. a classifier head). Default none. */
  activeModules?: readonly string[];
}

/** One block of a {@link BlockPartition}. */
export interface Block {
  /** Position of the block in the partition, 0-based. */
  readonly index: number;
  /** The prefixes that define the block. */
  readonly prefixes: readonly string[];
  /** Every parameter the prefixes match (minus those claimed by `activeModules`), in model order. */
  readonly parameterNames: readonly string[];
  /** The parameters trained while the block is active: `parameterNames`, and in LoRA mode only the lora ones. */
  readonly trainableNames: readonly string[];
}

/**
 * A validated split of a model's named parameters into BAdam blocks, with the parameters trainable in
 * every block (`activeModules`) and the frozen rest.
 *
 * Validation: a prefix that matches no parameter is an error naming it; a parameter matched by two blocks
 * is an error naming both; a prefix without a trailing dot that is not a full parameter name is a
 * warning (`layers.1` also matches `layers.10` ... `layers.19`), collected in {@link warnings}.
 *
 * LoRA mode is on when any parameter name contains `lora`: then only the lora parameters of a block train,
 * and blocks without any are {@link eligibleBlocks | skipped} by the schedule.
 *
 * @example
 * ```ts
 * const partition = BlockPartition.create(names, { includeLmHead: true });
 * partition.blocks.length; // D
 * partition.frozenNames;   // e.g. ['model.embed_tokens.weight']
 * ```
 */
export class BlockPartition {
  private constructor(
    /** The blocks in partition order. */
    readonly blocks: readonly Block[],
    /** Parameters matched by `activeModules`: trainable while any block is active. */
    readonly activeModuleNames: readonly string[],
    /** Parameters in no block and no active module: never trained. */
    readonly frozenNames: readonly string[],
    /** True when any parameter name contains `lora`. */
    readonly loraMode: boolean,
    /** Non-fatal problems found while building the partition. */
    readonly warnings: readonly string[],
  ) {}

  /** Builds and validates a partition of `names` (the model's parameter names, in model order). */
  static create(names: readonly string[], options: BlockPartitionOptions = {}): BlockPartition {
    const { blockPrefixList, preset, includeEmbedding = false, includeLmHead = false } = options;
    requireBoolean('includeEmbedding', includeEmbedding);
    requireBoolean('includeLmHead', includeLmHead);
    const activeModules = requireStringArray('activeModules', options.activeModules ?? []);
    if (preset !== undefined && !BLOCK_PARTITION_PRESETS.includes(preset)) {
      throw new BadamOptionError('preset', preset, `one of ${BLOCK_PARTITION_PRESETS.join(', ')}`);
    }
    if (blockPrefixList !== undefined && preset !== undefined) {
      throw new BadamOptionError(
        'preset',
        preset,
        'absent when blockPrefixList is given',
        'an explicit blockPrefixList already says what the blocks are; drop one of the two',
      );
    }
    const prefixLists =
      blockPrefixList === undefined
        ? blockPrefixesForPreset(names, preset ?? TRAINING_DEFAULTS.partition, {
            includeEmbedding,
            includeLmHead,
          })
        : validatePrefixList(blockPrefixList);
    if (prefixLists.length === 0) {
      throw new BadamPartitionError(
        `no blocks: none of the ${names.length} parameter names contains a layer index (layers.<i>., layer.<i>., h.<i>., blocks.<i>.)` +
          ` — pass blockPrefixList, or includeEmbedding / includeLmHead. First names: ${names.slice(0, 3).join(', ')}`,
      );
    }

    const warnings: string[] = [];
    const nameSet = new Set(names);
    const checkPrefix = (prefix: string, where: string) => {
      if (!names.some((n) => n.includes(prefix))) {
        throw new BadamPartitionError(
          `${where} prefix ${JSON.stringify(prefix)} matches no parameter; names look like ${JSON.stringify(names[0])}` +
            ` — fix or remove the prefix`,
        );
      }
      if (!prefix.endsWith('.') && !nameSet.has(prefix)) {
        warnings.push(
          `${where} prefix ${JSON.stringify(prefix)} has no trailing dot and matches by substring, ` +
            `so it may also match longer names (e.g. "layers.1" matches "layers.10"); write ${JSON.stringify(`${prefix}.`)} if that is not meant`,
        );
      }
    };
    activeModules.forEach((prefix, i) => {
      checkPrefix(prefix, `activeModules[${i}]`);
    });
    prefixLists.forEach((prefixes, b) => {
      prefixes.forEach((prefix, i) => {
        checkPrefix(prefix, `block ${b} [${i}]`);
      });
    });

    const inActiveModule = (name: string) => activeModules.some((p) => name.includes(p));
    const activeModuleNames = names.filter(inActiveModule);
    const owner = new Map<string, number>();
    const loraMode = names.some(isLoraParameter);
    const blocks: Block[] = prefixLists.map((prefixes, index) => {
      const parameterNames: string[] = [];
      for (const name of names) {
        if (!prefixes.some((p) => name.includes(p))) continue;
        const previous = owner.get(name);
        if (previous !== undefined) {
          throw new BadamPartitionError(
            `parameter ${JSON.stringify(name)} is in block ${previous} (${prefixLists[previous]?.join(', ')}) ` +
              `and block ${index} (${prefixes.join(', ')}); a parameter may belong to one block only — make the prefixes disjoint`,
          );
        }
        owner.set(name, index);
        if (!inActiveModule(name)) parameterNames.push(name);
      }
      const trainableNames = loraMode ? parameterNames.filter(isLoraParameter) : parameterNames;
      return { index, prefixes: [...prefixes], parameterNames, trainableNames };
    });
    const frozenNames = names.filter((n) => !owner.has(n) && !inActiveModule(n));
    return new BlockPartition(blocks, activeModuleNames, frozenNames, loraMode, warnings);
  }

  /** Indices of blocks with at least one trainable parameter: the blocks the schedule visits. */
  get eligibleBlocks(): number[] {
    return this.blocks.filter((b) => b.trainableNames.length > 0).map((b) => b.index);
  }

  /** The block a parameter belongs to, or `undefined` when it is in an active module or frozen. */
  blockOf(name: string): number | undefined {
    return this.blocks.find((b) => b.parameterNames.includes(name))?.index;
  }

  /** Parameters trained while `blockIndex` is active: the block's trainable parameters and the active modules. */
  trainableNamesOf(blockIndex: number): string[] {
    const block = this.blocks[blockIndex];
    if (block === undefined) {
      throw new BadamOptionError('blockIndex', blockIndex, `an integer in 0..${this.blocks.length - 1}`);
    }
    return [...block.trainableNames, ...this.activeModuleNames];
  }

  /**
   * A short fingerprint of the block structure (prefixes and member counts), stored in optimizer state so
   * that a checkpoint is not resumed into a different partition by mistake.
   */
  fingerprint(): string {
    const text = JSON.stringify([
      this.blocks.map((b) => [b.prefixes, b.trainableNames.length]),
      this.activeModuleNames.length,
    ]);
    let hash = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
    return `${this.blocks.length}:${hash.toString(16).padStart(8, '0')}`;
  }
}

function validatePrefixList(list: unknown): string[][] {
  if (!Array.isArray(list) || list.length === 0) {
    throw new BadamOptionError(
      'blockPrefixList',
      list,
      'a non-empty array of prefix arrays, e.g. [["model.layers.0."]]',
    );
  }
  return list.map((prefixes, i) => {
    if (!Array.isArray(prefixes) || prefixes.length === 0) {
      throw new BadamOptionError(`blockPrefixList[${i}]`, prefixes, 'a non-empty array of prefix strings');
    }
    return requireStringArray(`blockPrefixList[${i}]`, prefixes);
  });
}
