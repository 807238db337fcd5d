import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  BUILTIN_CONFIGS,
  BUILTIN_MODEL_NAMES,
  type BuiltinModelName,
} from '../architectures/builtin-configs.js';
import type { ModelArchitecture } from '../architectures/model-architecture.js';
import { parametersOf } from '../architectures/parameters-of.js';
import { parseHfConfig } from '../architectures/parse-hf-config.js';
import { type DType, parseDType } from '../dtype.js';
import { BadamOptionError } from '../errors.js';
import { formatBytes, formatCount, formatGigabytes } from '../format.js';
import { estimateActivationBytes } from '../memory/activation-memory.js';
import { estimateMemory, type MemoryEstimate, seedMemoryEstimate } from '../memory/estimate-memory.js';
import { totalElements } from '../parameters.js';
import { BlockPartition } from '../partition/block-partition.js';
import { BLOCK_PARTITION_PRESETS, type BlockPartitionPreset } from '../partition/presets.js';
import { textTable } from './text-table.js';

/** Where the command writes. */
export interface CommandOutput {
  log(text: string): void;
  error(text: string): void;
}

const USAGE = `Usage: badam-estimate (--config <path/to/config.json> | --model <name>) [options]

Prints the memory BAdam needs to fine-tune a model, per part, beside full Adam, LoRA and
BlockOptimizerRatio, from a Hugging Face config.json (Llama, Mistral, Qwen2, RoBERTa, BERT).

  --config <path>            config.json, or a model directory holding one
  --model <name>             a built-in config: ${BUILTIN_MODEL_NAMES.join(', ')}
  --blocks <preset>          BAdam partition: layer (default), module, matrix
  --dtype <dtype>            weight dtype: bf16 (default unless config.json says fp16/fp32), fp16, fp32
  --include-embedding        BAdam: the embedding is a block of its own
  --include-lm-head          BAdam: final norm and lm_head form a last block
  --batch-size <n>           activations: sequences per micro-batch (default 1)
  --seq-length <n>           activations: tokens per sequence (default 512)
  --no-gradient-checkpointing  activations without per-layer recomputation
  --lora-rank <r>            LoRA rank (default 8)
  --update-ratio <x>         BlockOptimizerRatio update ratio (default 0.1)
  --json                     print the estimates as JSON
  -h, --help                 show this help`;

class UsageError extends Error {}

interface Loaded {
  label: string;
  architecture: ModelArchitecture;
}

function loadModel(config: string | undefined, model: string | undefined): Loaded {
  if (config !== undefined && model !== undefined) {
    throw new UsageError('pass either --config or --model, not both');
  }
  if (model !== undefined) {
    if (!(BUILTIN_MODEL_NAMES as string[]).includes(model)) {
      throw new BadamOptionError('--model', model, `one of ${BUILTIN_MODEL_NAMES.join(', ')}`);
    }
    const builtin = BUILTIN_CONFIGS[model as BuiltinModelName];
    return {
      label: builtin.label,
      architecture: parseHfConfig(builtin.config, { source: `built-in ${model}` }),
    };
  }
  if (config === undefined) {
    throw new UsageError('pass --config path/to/config.json or --model <name>');
  }
  let path = config;
  let text: string;
  try {
    if (statSync(path).isDirectory()) path = join(path, 'config.json');
    // A named pipe or a device would be read forever: only a regular file is opened.
    if (!statSync(path).isFile())
      throw new Error('not a regular file (a named pipe or a device is never read)');
    text = readFileSync(path, 'utf8').replace(/^\uFEFF/, '');
  } catch (error) {
    throw new Error(
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  return { label: path, architecture: parseHfConfig(json, { source: path }) };
}

function positiveInt(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new BadamOptionError(flag, text, 'a positive integer');
  return value;
}

/**
 * Runs `badam-estimate` with `argv` (without the node and script paths), writing to `out`.
 * @returns the process exit code: 0 on success, 2 for a usage error, 1 for anything else.
 */
export function runEstimateCommand(argv: readonly string[], out: CommandOutput): number {
  try {
    let parsed: ReturnType<typeof parse>;
    try {
      parsed = parse(argv);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const { values } = parsed;
    if (values.help) {
      out.log(USAGE);
      return 0;
    }
    const { label, architecture } = loadModel(values.config, values.model);
    const preset = (values.blocks ?? 'layer') as BlockPartitionPreset;
    if (!BLOCK_PARTITION_PRESETS.includes(preset)) {
      throw new BadamOptionError('--blocks', values.blocks, `one of ${BLOCK_PARTITION_PRESETS.join(', ')}`);
    }
    const dtype: DType =
      values.dtype !== undefined ? parseDType(values.dtype, '--dtype') : (architecture.dtype ?? 'bfloat16');
    const batchSize = positiveInt('--batch-size', values['batch-size'], 1);
    const seqLength = positiveInt('--seq-length', values['seq-length'], 512);
    const loraRank = positiveInt('--lora-rank', values['lora-rank'], 8);
    const updateRatio = values['update-ratio'] === undefined ? 0.1 : Number(values['update-ratio']);
    if (!(updateRatio > 0 && updateRatio <= 1)) {
      throw new BadamOptionError('--update-ratio', values['update-ratio'], 'a number in (0, 1]');
    }
    const checkpointing = !values['no-gradient-checkpointing'];

    const parameters = parametersOf(architecture, dtype);
    const names = parameters.map((p) => p.name);
    const partition = BlockPartition.create(names, {
      preset,
      includeEmbedding: values['include-embedding'] ?? false,
      includeLmHead: values['include-lm-head'] ?? false,
    });
    const blocks = partition.blocks.map((b) => b.trainableNames);
    const activationBytes = estimateActivationBytes(architecture, {
      batchSize,
      seqLength,
      dtype,
      gradientCheckpointing: checkpointing,
    });
    const common = { parameters, activationBytes };
    const estimates = {
      adam: estimateMemory({ method: 'adam', ...common }),
      badam: estimateMemory({ method: 'badam', blocks, ...common }),
      lora: estimateMemory({ method: 'lora', loraRank, ...common }),
      ratio: estimateMemory({ method: 'ratio', updateRatio, ...common }),
    };
    const m = totalElements(parameters);
    const d = partition.blocks.length;
    const seed = seedMemoryEstimate(m, d);

    if (values.json) {
      out.log(
        JSON.stringify(
          {
            model: label,
            architecture,
            dtype,
            parameters: m,
            blocks: { preset, count: d, frozen: partition.frozenNames },
            activations: { batchSize, seqLength, gradientCheckpointing: checkpointing },
            estimates,
            seed,
          },
          null,
          2,
        ),
      );
      return 0;
    }

    const row = (name: string, e: MemoryEstimate) => [
      name,
      formatCount(e.trainedElements),
      formatGigabytes(e.weights),
      formatGigabytes(e.masters),
      formatGigabytes(e.gradients),
      formatGigabytes(e.optimizerState),
      formatGigabytes(e.masters + e.gradients + e.optimizerState),
      formatGigabytes(e.activations),
      formatGigabytes(e.total),
    ];
    const largest = Math.max(
      ...blocks.map((names) => totalElements(parameters.filter((p) => names.includes(p.name)))),
    );
    const lines = [
      `${label}: ${architecture.family}, ${formatCount(m)} parameters, ${architecture.numLayers} layers, weights ${dtype}`,
      `BAdam blocks by ${preset}: D = ${d}, largest block ${formatCount(largest)} elements` +
        (partition.frozenNames.length > 0 ? `; frozen: ${partition.frozenNames.join(', ')}` : ''),
      `Activations (estimate): batch ${batchSize} x ${seqLength} tokens, gradient checkpointing ${checkpointing ? 'on' : 'off'}`,
      '',
      textTable(
        [
          'method',
          'trained',
          'weights',
          'masters',
          'gradients',
          'optimizer',
          'training state',
          'activations',
          'total',
        ],
        [
          row('full Adam', estimates.adam),
          row(`BAdam (D = ${d})`, estimates.badam),
          row(`LoRA (r = ${loraRank})`, estimates.lora),
          row(`BAdam ratio (${updateRatio})`, estimates.ratio),
        ],
      ),
      '',
      `Seed estimate (BAdam paper, 16-bit weights, no activations): BAdam 2M + 16M/D = ${formatBytes(seed.weights)} + ` +
        `${formatBytes(seed.activeBlock)} = ${formatBytes(seed.badam)}; full Adam 18M = ${formatBytes(seed.adam)}`,
      'training state = masters + gradients + optimizer (for BAdam: the active block only). GB = 10^9 bytes.',
      'Estimates for planning; backends report what they really hold.',
    ];
    out.log(lines.join('\n'));
    return 0;
  } catch (error) {
    const message = (error as Error).message;
    out.error(`badam-estimate: error: ${message}`);
    if (error instanceof UsageError) {
      out.error('Run badam-estimate --help for the options.');
      return 2;
    }
    return error instanceof BadamOptionError ? 2 : 1;
  }
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string' },
      model: { type: 'string' },
      blocks: { type: 'string' },
      dtype: { type: 'string' },
      'include-embedding': { type: 'boolean' },
      'include-lm-head': { type: 'boolean' },
      'batch-size': { type: 'string' },
      'seq-length': { type: 'string' },
      'no-gradient-checkpointing': { type: 'boolean' },
      'lora-rank': { type: 'string' },
      'update-ratio': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
