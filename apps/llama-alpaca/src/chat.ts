import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { type FlagSpec, UsageError } from '@badam/core';
import { type ChatTurn, encodeGenerationPrompt, templateStopIds } from '@badam/data';
import { generate } from '@badam/models';
import { useNativeMatMul, useTfjsBackend } from '@badam/tfjs';
import { loadLlamaWithAdapters, modelFolders } from './adapters.js';
import { chooseChatTemplate } from './chat-template-choice.js';
import { refuseHubId } from './model-path.js';

export const CHAT_FLAGS: Readonly<Record<string, FlagSpec>> = {
  model_name_or_path: {
    type: 'string',
    help: 'a Hugging Face model directory (e.g. the output_dir of a badam-llama run, or of a LoRA run: its adapter on its base)',
  },
  adapter_name_or_path: {
    type: 'string',
    help: 'LoRA adapter folder(s), comma-separated, merged into the model for the chat',
    aka: 'LLaMA-Factory',
  },
  infer_backend: {
    type: 'string',
    help: "ignored: generation runs on badam-llama's own tfjs Llama",
    aka: 'LLaMA-Factory',
  },
  trust_remote_code: {
    type: 'boolean',
    help: "ignored: only badam-llama's own Llama code runs",
    aka: 'LLaMA-Factory',
  },
  template: {
    type: 'string',
    help: "chat template (default: the one the run was trained with, else the model's chat_template, else alpaca)",
  },
  query: { type: 'string', help: 'answer one message and exit (otherwise an interactive session)' },
  system: { type: 'string', default: '', help: 'system prompt' },
  max_new_tokens: { type: 'integer', min: 1, default: 128, help: 'most new tokens per answer' },
  temperature: { type: 'number', min: 0, default: 0, help: '0 is greedy' },
  top_p: { type: 'number', min: 0, exclusiveMin: true, max: 1, default: 1, help: 'nucleus sampling' },
  seed: { type: 'integer', min: 0, default: 0, help: 'sampling seed' },
  tfjs_backend: {
    type: 'string',
    choices: ['auto', 'cpu', 'wasm', 'tensorflow'],
    default: 'auto',
    help: 'tfjs backend',
  },
  help: { type: 'boolean', default: false, help: 'show this help' },
};

/** The template a badam-llama run recorded in its output directory, if any. */
export async function recordedTemplate(directory: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(join(directory, 'badam_llama.json'), 'utf8')) as { template?: string })
      .template;
  } catch {
    return undefined;
  }
}

/** `badam-llama chat`: talk to a model with its chat template, greedy or with top-p sampling. */
export async function runChat(
  values: Record<string, unknown>,
  io: { log(m: string): void; warn(m: string): void },
  input: NodeJS.ReadableStream & { isTTY?: boolean } = process.stdin,
): Promise<void> {
  const dir = values.model_name_or_path as string | undefined;
  if (dir === undefined)
    throw new UsageError('chat needs --model_name_or_path (a model directory, e.g. the output_dir of a run)');
  refuseHubId(dir, 'model_name_or_path');
  for (const flag of ['infer_backend', 'trust_remote_code'])
    if (values[flag] !== undefined)
      io.warn(`badam-llama: --${flag} is ignored: ${(CHAT_FLAGS[flag]!.help).slice(9)}`);
  await useTfjsBackend(values.tfjs_backend as 'auto');
  await useNativeMatMul().catch(() => undefined); // faster generation when the native kernels are built
  const adapters = ((values.adapter_name_or_path as string | undefined) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const folders = await modelFolders(dir, adapters);
  const { model, tokenizer } = await loadLlamaWithAdapters(folders, { keepLast: false }, io.warn);
  const template = await chooseChatTemplate(
    // The template the adapter's run (else the model's) was trained with, as the run recorded it.
    (values.template as string | undefined) ??
      (adapters.length > 0 ? await recordedTemplate(adapters.at(-1)!) : undefined) ??
      (await recordedTemplate(dir)),
    folders.tokenizerDir,
    'alpaca',
    (message) => io.warn(`badam-llama: ${message}`),
  );
  const stopTokenIds = templateStopIds(template, tokenizer);
  const history: ChatTurn[] = [];
  const answer = (user: string): string => {
    const prompt = encodeGenerationPrompt(template, tokenizer, history, user, values.system as string);
    const ids = generate(model, prompt, {
      maxNewTokens: values.max_new_tokens as number,
      temperature: values.temperature as number,
      topP: values.top_p as number,
      stopTokenIds,
      seed: values.seed as number,
    });
    const text = tokenizer.decode(ids, { skipSpecialTokens: true }).trim();
    history.push({ user, assistant: text });
    return text;
  };
  if (values.query !== undefined) {
    io.log(answer(values.query as string));
    return;
  }
  await chatOverLines(dir, template.name, answer, io, input);
}

/**
 * The chat loop over `input`'s lines: on a terminal, a `you>` prompt per message until an empty line or
 * Ctrl-D; from a pipe or file, an answer (`model> ...`) for every non-empty line, to the end of the input.
 * Lines are read as they come (a line that arrives while an answer is generated waits, none is dropped).
 */
async function chatOverLines(
  dir: string,
  templateName: string,
  answer: (user: string) => string,
  io: { log(m: string): void },
  input: NodeJS.ReadableStream & { isTTY?: boolean },
): Promise<void> {
  const interactive = input.isTTY === true;
  const rl = createInterface({ input, output: process.stdout, terminal: interactive });
  try {
    if (interactive) {
      io.log(`chatting with ${dir} (template ${templateName}); an empty line or Ctrl-D ends`);
      rl.setPrompt('you> ');
      rl.prompt();
    }
    for await (const line of rl) {
      if (line.trim() === '') {
        if (interactive) break;
        continue;
      }
      io.log(`model> ${answer(line)}`);
      if (interactive) rl.prompt();
    }
  } finally {
    rl.close();
  }
}
