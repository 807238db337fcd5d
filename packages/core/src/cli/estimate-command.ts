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
import { TRAINING_DEFAULTS } from '../defaults.js';
import { type DType, parseDType } from '../dtype.js';
import { BadamOptionError } from '../errors.js';
import { formatBytes, formatCount, formatGigabytes } from '../format.js';
import { estimateActivationBytes } from '../memory/activation-memory.js';
import { estimateMemory, type MemoryEstimate, seedMemoryEstimate } from '../memory/estimate-memory.js';
import { totalElements } from '../parameters.js';
import { BlockPartition } from '../partition/block-partition.js';
import { BLOCK_PARTITION_PRESETS, type BlockPartitionPreset } from '../partition/presets.js';
import { deviceMemoryOutput } from './device-memory-report.js';
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
  --lora-rank <r>            LoRA rank (default ${TRAINING_DEFAULTS.lora.rank})
  --update-ratio <x>         BlockOptimizerRatio update ratio (default ${TRAINING_DEFAULTS.ratio.updateRatio})
  --device-memory <GiB>      instead: the largest batch per sequence length (or at --seq-length) whose
                             step on @badam/cuda fits in this much device memory (Llama-family models)
  --method <badam|adam>      with --device-memory: BAdam over the blocks (default) or full Adam
  --reserve <GiB>            with --device-memory: kept for the CUDA context and allocator (default 1)
  --json                     print the estimates as JSON
  -V, --version              print the version
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

/** What the command line asks for. */
interface EstimateSettings extends Loaded {
  readonly preset: BlockPartitionPreset;
  readonly dtype: DType;
  readonly includeEmbedding: boolean;
  readonly includeLmHead: boolean;
  readonly batchSize: number;
  readonly seqLength: number;
  readonly checkpointing: boolean;
  readonly loraRank: number;
  readonly updateRatio: number;
}

/** The estimates of every method for the settings. */
interface Estimates {
  readonly parameters: ReturnType<typeof parametersOf>;
  readonly partition: BlockPartition;
  readonly byMethod: Readonly<Record<'adam' | 'badam' | 'lora' | 'ratio', MemoryEstimate>>;
  readonly seed: ReturnType<typeof seedMemoryEstimate>;
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
    if (values.version) {
      const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
        version: string;
      };
      out.log(`badam-estimate ${pkg.version}`);
      return 0;
    }
    const settings = estimateSettings(values);
    if (values['device-memory'] !== undefined) {
      out.log(deviceMemoryOutput(values, deviceMemoryModel(settings)));
      return 0;
    }
    const estimates = estimateEveryMethod(settings);
    out.log(values.json ? estimatesJson(settings, estimates) : estimatesText(settings, estimates));
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

/** The command line's values checked, with core's defaults where it gives none. */
function estimateSettings(values: ReturnType<typeof parse>['values']): EstimateSettings {
  const { label, architecture } = loadModel(values.config, values.model);
  const preset = (values.blocks ?? TRAINING_DEFAULTS.partition) as BlockPartitionPreset;
  if (!BLOCK_PARTITION_PRESETS.includes(preset)) {
    throw new BadamOptionError('--blocks', values.blocks, `one of ${BLOCK_PARTITION_PRESETS.join(', ')}`);
  }
  const updateRatio =
    values['update-ratio'] === undefined
      ? TRAINING_DEFAULTS.ratio.updateRatio
      : Number(values['update-ratio']);
  if (!(updateRatio > 0 && updateRatio <= 1)) {
    throw new BadamOptionError('--update-ratio', values['update-ratio'], 'a number in (0, 1]');
  }
  return {
    label,
    architecture,
    preset,
    dtype:
      values.dtype !== undefined ? parseDType(values.dtype, '--dtype') : (architecture.dtype ?? 'bfloat16'),
    includeEmbedding: values['include-embedding'] ?? false,
    includeLmHead: values['include-lm-head'] ?? false,
    batchSize: positiveInt('--batch-size', values['batch-size'], 1),
    seqLength: positiveInt('--seq-length', values['seq-length'], 512),
    checkpointing: !values['no-gradient-checkpointing'],
    loraRank: positiveInt('--lora-rank', values['lora-rank'], TRAINING_DEFAULTS.lora.rank),
    updateRatio,
  };
}

/** What `--device-memory` sizes: the settings' model, its parameter names and its blocks. */
function deviceMemoryModel(settings: EstimateSettings): Parameters<typeof deviceMemoryOutput>[1] {
  const { architecture, label, dtype, checkpointing, seqLength } = settings;
  const names = parametersOf(architecture, dtype).map((p) => p.name);
  const partition = BlockPartition.create(names, {
    preset: settings.preset,
    includeEmbedding: settings.includeEmbedding,
    includeLmHead: settings.includeLmHead,
  });
  const blocks = partition.blocks.map((b) => b.trainableNames);
  return { architecture, label, dtype, checkpointing, names, blocks, seqLength };
}

/** Full Adam, BAdam, LoRA and the ratio on the settings' model, and the paper's closed form. */
function estimateEveryMethod(settings: EstimateSettings): Estimates {
  const { architecture, dtype } = settings;
  const parameters = parametersOf(architecture, dtype);
  const partition = BlockPartition.create(
    parameters.map((p) => p.name),
    {
      preset: settings.preset,
      includeEmbedding: settings.includeEmbedding,
      includeLmHead: settings.includeLmHead,
    },
  );
  const activationBytes = estimateActivationBytes(architecture, {
    batchSize: settings.batchSize,
    seqLength: settings.seqLength,
    dtype,
    gradientCheckpointing: settings.checkpointing,
  });
  const common = { parameters, activationBytes };
  const blocks = partition.blocks.map((b) => b.trainableNames);
  return {
    parameters,
    partition,
    byMethod: {
      adam: estimateMemory({ method: 'adam', ...common }),
      badam: estimateMemory({ method: 'badam', blocks, ...common }),
      lora: estimateMemory({ method: 'lora', loraRank: settings.loraRank, ...common }),
      ratio: estimateMemory({ method: 'ratio', updateRatio: settings.updateRatio, ...common }),
    },
    seed: seedMemoryEstimate(totalElements(parameters), partition.blocks.length),
  };
}

/** `--json`: the settings and the estimates. */
function estimatesJson(settings: EstimateSettings, estimates: Estimates): string {
  const { partition } = estimates;
  return JSON.stringify(
    {
      model: settings.label,
      architecture: settings.architecture,
      dtype: settings.dtype,
      parameters: totalElements(estimates.parameters),
      blocks: { preset: settings.preset, count: partition.blocks.length, frozen: partition.frozenNames },
      activations: {
        batchSize: settings.batchSize,
        seqLength: settings.seqLength,
        gradientCheckpointing: settings.checkpointing,
      },
      estimates: estimates.byMethod,
      seed: estimates.seed,
    },
    null,
    2,
  );
}

/** The estimates as a table with the model, the partition and the paper's closed form. */
function estimatesText(settings: EstimateSettings, estimates: Estimates): string {
  const { label, architecture, dtype, preset, loraRank, updateRatio } = settings;
  const { parameters, partition, byMethod, seed } = estimates;
  const m = totalElements(parameters);
  const d = partition.blocks.length;
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
    ...partition.blocks.map((b) =>
      totalElements(parameters.filter((p) => b.trainableNames.includes(p.name))),
    ),
  );
  const lines = [
    `${label}: ${architecture.family}, ${formatCount(m)} parameters, ${architecture.numLayers} layers, weights ${dtype}`,
    `BAdam blocks by ${preset}: D = ${d}, largest block ${formatCount(largest)} elements` +
      (partition.frozenNames.length > 0 ? `; frozen: ${partition.frozenNames.join(', ')}` : ''),
    `Activations (estimate): batch ${settings.batchSize} x ${settings.seqLength} tokens, gradient checkpointing ${settings.checkpointing ? 'on' : 'off'}`,
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
        row('full Adam', byMethod.adam),
        row(`BAdam (D = ${d})`, byMethod.badam),
        row(`LoRA (r = ${loraRank})`, byMethod.lora),
        row(`BAdam ratio (${updateRatio})`, byMethod.ratio),
      ],
    ),
    '',
    `Seed estimate (BAdam paper, 16-bit weights, no activations): BAdam 2M + 16M/D = ${formatBytes(seed.weights)} + ` +
      `${formatBytes(seed.activeBlock)} = ${formatBytes(seed.badam)}; full Adam 18M = ${formatBytes(seed.adam)}`,
    'training state = masters + gradients + optimizer (for BAdam: the active block only). GB = 10^9 bytes.',
    'Estimates for planning; backends report what they really hold.',
  ];
  return lines.join('\n');
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
      'device-memory': { type: 'string' },
      method: { type: 'string' },
      reserve: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  });
}
