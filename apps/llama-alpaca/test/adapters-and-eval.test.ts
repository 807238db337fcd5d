import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HfTokenizer, jinjaChatTemplate } from '@badam/data';
import { loadLlama } from '@badam/models';
import { SafetensorsFile } from '@badam/safetensors';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLlamaWithAdapters, modelFolders } from '../src/adapters.js';
import { generatedInstructions, runCommand } from '../src/index.js';
import { writeTinyLlamaDir } from './fixtures/tiny-llama-dir.js';

// LoRA adapters in and out (continue training, chat, predict, export merged as llamafactory-cli export
// does), evaluation and prediction without training as LLaMA-Factory writes them, ShareGPT / OpenAI data,
// and templates that come from the model's own chat_template.

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'src', 'cli.js');

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (m: string) => out.push(m), warn: (m: string) => err.push(m) }, out, err };
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

async function readTensor(path: string, name: string): Promise<Float32Array> {
  const file = await SafetensorsFile.open(path);
  try {
    return await file.readFloat32(name);
  } finally {
    await file.close();
  }
}

let dir: string;
let modelDir: string;
let dataDir: string;
let loraOut: string;

const base = () => ['--model_name_or_path', modelDir, '--template', 'default', '--dataset_dir', dataDir];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'badam-adapters-'));
  modelDir = join(dir, 'tiny-llama');
  await writeTinyLlamaDir(modelDir, 13);
  dataDir = join(dir, 'data');
  await mkdir(dataDir, { recursive: true });
  const records = generatedInstructions(40, 0, 9).train.map(({ instruction, input, output }) => ({
    instruction,
    input,
    output,
  }));
  await writeFile(join(dataDir, 'tasks.json'), JSON.stringify(records));
  // The same examples as ShareGPT (from / value, a system column) and as OpenAI messages (role / content).
  await writeFile(
    join(dataDir, 'sharegpt.json'),
    JSON.stringify(
      records.map((r) => ({
        conversations: [
          { from: 'human', value: `${r.instruction}\n${r.input}`.trim() },
          { from: 'gpt', value: r.output },
        ],
        system: 'Answer briefly.',
      })),
    ),
  );
  await writeFile(
    join(dataDir, 'openai.jsonl'),
    records
      .map((r) =>
        JSON.stringify({
          messages: [
            { role: 'system', content: 'Answer briefly.' },
            { role: 'user', content: r.instruction },
            { role: 'assistant', content: r.output },
            { role: 'user', content: 'Again?' },
            { role: 'assistant', content: r.output },
          ],
        }),
      )
      .join('\n'),
  );
  await writeFile(
    join(dataDir, 'dataset_info.json'),
    JSON.stringify({
      tasks: { file_name: 'tasks.json' },
      sharegpt_demo: {
        file_name: 'sharegpt.json',
        formatting: 'sharegpt',
        columns: { messages: 'conversations', system: 'system' },
      },
      openai_demo: {
        file_name: 'openai.jsonl',
        formatting: 'sharegpt',
        columns: { messages: 'messages' },
        tags: {
          role_tag: 'role',
          content_tag: 'content',
          user_tag: 'user',
          assistant_tag: 'assistant',
          system_tag: 'system',
        },
      },
    }),
  );
  // A LoRA run whose adapter the tests below load: evaluated and saved at every step.
  loraOut = join(dir, 'lora');
  const run = capture();
  const argv = [
    ...base(),
    ...['--dataset', 'tasks', '--finetuning_type', 'lora', '--lora_rank', '4', '--learning_rate', '5e-2'],
    ...[
      '--max_samples',
      '24',
      '--val_size',
      '4',
      '--max_steps',
      '2',
      '--eval_steps',
      '1',
      '--save_steps',
      '1',
    ],
    ...['--output_dir', loraOut],
  ];
  const code = await runCommand(argv, run.io);
  if (code !== 0) throw new Error(run.err.join('\n'));
}, 300_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('LoRA adapters', () => {
  it('a LoRA run leaves a peft adapter folder naming its base, and checkpoints that are adapter folders too', async () => {
    const files = await readdir(loraOut);
    for (const file of [
      'adapter_config.json',
      'adapter_model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ])
      expect(files).toContain(file);
    expect(files).not.toContain('model.safetensors');
    expect(await readJson(join(loraOut, 'adapter_config.json'))).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      base_model_name_or_path: modelDir,
    });
    const b = await readTensor(
      join(loraOut, 'adapter_model.safetensors'),
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
    );
    expect(b.some((x) => x !== 0)).toBe(true); // B starts at zero: the adapter learned
    expect(await readdir(join(loraOut, 'checkpoint-1'))).toEqual(
      expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'config.json']),
    );
  });

  it('chat talks to an adapter folder, to base + --adapter_name_or_path alike, and to a LoRA checkpoint', async () => {
    const ask = async (args: string[]) => {
      const chat = capture();
      const query = ['--query', 'Say hi', '--max_new_tokens', '6'];
      expect(await runCommand(['chat', ...args, ...query], chat.io), chat.err.join('\n')).toBe(0);
      return chat.out;
    };
    const fromFolder = await ask(['--model_name_or_path', loraOut]);
    expect(fromFolder).toHaveLength(1);
    expect(await ask(['--model_name_or_path', modelDir, '--adapter_name_or_path', loraOut])).toEqual(
      fromFolder,
    );
    expect(await ask(['--model_name_or_path', join(loraOut, 'checkpoint-2')])).toEqual(fromFolder);
    // LLaMA-Factory's examples/inference/*_lora_sft.yaml, key for key.
    const recipe = join(dir, 'inference.yaml');
    await writeFile(
      recipe,
      [
        `model_name_or_path: ${modelDir}`,
        `adapter_name_or_path: ${loraOut}`,
        'template: default',
        'infer_backend: huggingface  # choices: [huggingface, vllm, sglang, ktransformers]',
        'trust_remote_code: true',
      ].join('\n'),
    );
    const chat = capture();
    const query = ['--query', 'Say hi', '--max_new_tokens', '6'];
    expect(await runCommand(['chat', recipe, ...query], chat.io), chat.err.join('\n')).toBe(0);
    expect(chat.out).toEqual(fromFolder);
    expect(chat.err.join('\n')).toContain('--infer_backend is ignored: ');
  });

  it("export merges the adapter into the base: a plain Hugging Face folder, sharded, whose logits are the adapted model's", async () => {
    const exported = join(dir, 'merged');
    // LLaMA-Factory's examples/merge_lora recipe, key for key.
    const recipe = join(dir, 'merge.yaml');
    await writeFile(
      recipe,
      [
        `model_name_or_path: ${modelDir}`,
        `adapter_name_or_path: ${loraOut}`,
        'template: default',
        'trust_remote_code: true',
        `export_dir: ${exported}`,
        'export_size: 0.00002',
        'export_device: cpu',
        'export_legacy_format: false',
      ].join('\n'),
    );
    const run = capture();
    expect(await runCommand(['export', recipe], run.io), run.err.join('\n')).toBe(0);
    const files = await readdir(exported);
    for (const file of [
      'config.json',
      'model.safetensors.index.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
      'generation_config.json',
    ])
      expect(files).toContain(file);
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(1);
    expect(files.some((f) => f.startsWith('adapter_'))).toBe(false);
    expect((await readJson(join(exported, 'tokenizer_config.json'))).chat_template).toEqual(
      expect.stringContaining("'Human: '"),
    );
    const { model: merged } = await loadLlama(exported);
    const { model: adapted } = await loadLlamaWithAdapters(
      await modelFolders(modelDir, [loraOut]),
      { keepLast: true },
      () => {},
    );
    const { model: plain } = await loadLlama(modelDir);
    try {
      const ids = tf.tensor2d([[1, 72, 105, 33, 10, 65]], undefined, 'int32');
      const logits = (m: typeof merged) => Array.from(m.forward(ids).dataSync());
      const [a, b, c] = [logits(merged), logits(adapted), logits(plain)];
      a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 4));
      expect(a.some((x, i) => Math.abs(x - c[i]!) > 1e-4)).toBe(true);
    } finally {
      merged.dispose();
      adapted.dispose();
      plain.dispose();
    }
  });

  it('--adapter_name_or_path continues LoRA training on the adapter, or merges it before block training', async () => {
    const lora = capture();
    const more = ['--dataset', 'tasks', '--max_samples', '8', '--max_steps', '1'];
    const withAdapter = [...base(), '--adapter_name_or_path', loraOut, ...more];
    const out = join(dir, 'lora-more');
    expect(
      await runCommand([...withAdapter, '--finetuning_type', 'lora', '--output_dir', out], lora.io),
    ).toBe(0);
    expect(lora.err.join('\n')).toContain(`LoRA adapter(s) ${loraOut} on ${modelDir}: the last trains on`);
    // It went on from the adapter: B is the loaded one moved by one step, not zero plus one step.
    const name = 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight';
    const before = await readTensor(join(loraOut, 'adapter_model.safetensors'), name);
    const after = await readTensor(join(out, 'adapter_model.safetensors'), name);
    const moved = Math.max(...after.map((x, i) => Math.abs(x - before[i]!)));
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(Math.max(...before.map(Math.abs)));
    const block = capture();
    const blockOut = join(dir, 'block-on-merged');
    expect(
      await runCommand([...withAdapter, '--finetuning_type', 'block', '--output_dir', blockOut], block.io),
    ).toBe(0);
    expect(block.err.join('\n')).toContain('merged into the model');
    expect(existsSync(join(blockOut, 'model.safetensors'))).toBe(true);
  });
});

describe('evaluation and prediction without training', () => {
  it('--do_train false --do_eval on a LoRA checkpoint gives the eval loss the run logged at that step, in eval_results.json', async () => {
    const out = join(dir, 'eval-only');
    const run = capture();
    const argv = [
      ...['--model_name_or_path', join(loraOut, 'checkpoint-1'), '--template', 'default'],
      ...['--dataset_dir', dataDir, '--dataset', 'tasks', '--max_samples', '24', '--val_size', '4'],
      ...['--do_train', 'false', '--do_eval', '--output_dir', out],
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);
    const results = await readJson(join(out, 'eval_results.json'));
    expect(Object.keys(results).sort()).toEqual([
      'eval_accuracy',
      'eval_loss',
      'eval_runtime',
      'eval_samples_per_second',
      'eval_steps_per_second',
    ]);
    const state = await readJson(join(loraOut, 'trainer_state.json'));
    const logged = (state.log_history as Array<Record<string, number>>).find(
      (e) => e.step === 1 && e.eval_loss !== undefined,
    )!;
    expect(results.eval_loss as number).toBeCloseTo(logged.eval_loss!, 4);
    expect(results.eval_accuracy as number).toBeCloseTo(logged.eval_accuracy!, 4);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(out, 'trainer_log.jsonl'))).toBe(false);
  });

  it("--do_predict alone on an adapter folder, as LLaMA-Factory's predict recipe: generated_predictions.jsonl and predict_results.json", async () => {
    const out = join(dir, 'predict-only');
    const run = capture();
    const argv = [
      ...['--model_name_or_path', loraOut, '--template', 'default', '--dataset_dir', dataDir],
      ...['--stage', 'sft', '--do_predict', '--eval_dataset', 'tasks', '--max_samples', '3'],
      ...['--predict_with_generate', '--max_new_tokens', '4', '--output_dir', out, '--overwrite_output_dir'],
    ];
    expect(await runCommand(argv, run.io), run.err.join('\n')).toBe(0);
    const lines = (await readFile(join(out, 'generated_predictions.jsonl'), 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines)
      expect(Object.keys(JSON.parse(line)).sort()).toEqual(['label', 'predict', 'prompt']);
    expect(Object.keys(await readJson(join(out, 'predict_results.json'))).sort()).toEqual([
      'predict_bleu-4',
      'predict_exact_match',
      'predict_rouge-1',
      'predict_rouge-2',
      'predict_rouge-l',
      'predict_runtime',
      'predict_samples',
      'predict_samples_per_second',
    ]);
    expect(run.out.join('\n')).toContain('predicting on 3 examples');
  });
});

describe('datasets and templates as LLaMA-Factory has them', () => {
  it.each([
    ['sharegpt_demo', 'ShareGPT (from / value, a system column)'],
    ['openai_demo', 'OpenAI messages (role / content tags, a system message, two turns)'],
  ])('trains on %s: %s', async (dataset) => {
    const run = capture();
    const argv = [...base(), '--dataset', dataset, '--max_samples', '10', '--max_steps', '1'];
    expect(await runCommand([...argv, '--output_dir', join(dir, dataset)], run.io), run.err.join('\n')).toBe(
      0,
    );
    expect(run.out.join('\n')).toContain('10 training and 0 validation examples');
  });

  it("a template name that is not built in uses the model's chat_template, and is refused where the model has none", async () => {
    const chatml = join(dir, 'chatml-model');
    await mkdir(chatml, { recursive: true });
    for (const file of ['config.json', 'model.safetensors', 'tokenizer.json'])
      await writeFile(join(chatml, file), await readFile(join(modelDir, file)));
    const source =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    const config = await readJson(join(modelDir, 'tokenizer_config.json'));
    await writeFile(
      join(chatml, 'tokenizer_config.json'),
      JSON.stringify({ ...config, chat_template: source }),
    );
    const run = capture();
    const argv = ['--model_name_or_path', chatml, '--dataset_dir', dataDir, '--dataset', 'tasks'];
    const short = ['--max_samples', '8', '--max_steps', '1', '--template', 'qwen3_nothink'];
    expect(await runCommand([...argv, ...short, '--output_dir', join(dir, 'qwen3')], run.io)).toBe(0);
    expect(run.err.join('\n')).toContain('--template qwen3_nothink is not one of the built-in templates');
    expect(run.out.join('\n')).toContain('template chat_template,');
    // The output keeps the model's template.
    expect((await readJson(join(dir, 'qwen3', 'tokenizer_config.json'))).chat_template).toBe(source);
    const refused = capture();
    const plain = [...base().slice(0, 2), '--dataset_dir', dataDir, '--dataset', 'tasks', ...short];
    expect(await runCommand([...plain, '--output_dir', join(dir, 'refused')], refused.io)).toBe(2);
    expect(refused.err.join('\n')).toContain('--template qwen3_nothink is not built in');
  });

  it("the output's tokenizer_config.json keeps the built-in template it trained with, as Jinja that renders the same tokens", async () => {
    const config = await readJson(join(loraOut, 'tokenizer_config.json'));
    const tokenizer = await HfTokenizer.fromDirectory(loraOut);
    const fromFile = jinjaChatTemplate({
      source: config.chat_template as string,
      bosToken: '<s>',
      eosToken: '</s>',
    });
    const { encodeTurns, chatTemplate } = await import('@badam/data');
    const turns = [
      { user: 'Hi', assistant: 'Hello.' },
      { user: 'And now?', assistant: 'Now this.' },
    ];
    for (const system of ['', 'Be brief.'])
      expect(encodeTurns(fromFile, tokenizer, turns, system)).toEqual(
        encodeTurns(chatTemplate('default'), tokenizer, turns, system),
      );
  });
});

describe('chat from a pipe', () => {
  it.skipIf(!existsSync(cli))('answers every line piped in and exits 0', () => {
    const result = spawnSync(
      process.execPath,
      [cli, 'chat', '--model_name_or_path', modelDir, '--template', 'default', '--max_new_tokens', '3'],
      { input: 'first\nsecond\n\nthird\n', encoding: 'utf8', timeout: 120_000 },
    );
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.split('\n').filter((l) => l.startsWith('model> '))).toHaveLength(3);
  });

  it.skipIf(!existsSync(cli))('--version prints the package version', () => {
    const result = spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' });
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toMatch(/^badam-llama \d+\.\d+\.\d+/);
  });
});
