import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { type FlagSpec, UsageError } from '@badam/core';
import { type ChatTurn, encodeGenerationPrompt, HfTokenizer, templateStopIds } from '@badam/data';
import { generate, loadLlama } from '@badam/models';
import { useNativeMatMul, useTfjsBackend } from '@badam/tfjs';
import { chooseChatTemplate } from './chat-template-choice.js';
import { refuseHubId } from './model-path.js';

export const CHAT_FLAGS: Readonly<Record<string, FlagSpec>> = {
  model_name_or_path: {
    type: 'string',
    help: 'a Hugging Face model directory (e.g. the output_dir of a badam-llama run)',
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
async function recordedTemplate(directory: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(join(directory, 'badam_llama.json'), 'utf8')) as { template?: string })
      .template;
  } catch {
    return undefined;
  }
}

/** `badam-llama chat`: talk to a model with its chat template, greedy or with top-p sampling. */
export async function runChat(values: Record<string, unknown>, io: { log(m: string): void }): Promise<void> {
  const dir = values.model_name_or_path as string | undefined;
  if (dir === undefined)
    throw new UsageError('chat needs --model_name_or_path (a model directory, e.g. the output_dir of a run)');
  refuseHubId(dir, 'model_name_or_path');
  await useTfjsBackend(values.tfjs_backend as 'auto');
  await useNativeMatMul().catch(() => undefined); // faster generation when the native kernels are built
  const [{ model }, tokenizer] = await Promise.all([loadLlama(dir), HfTokenizer.fromDirectory(dir)]);
  const template = await chooseChatTemplate(
    (values.template as string | undefined) ?? (await recordedTemplate(dir)),
    dir,
    'alpaca',
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
  io.log(`chatting with ${dir} (template ${template.name}); an empty line or Ctrl-D ends`);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  try {
    for (;;) {
      const line = await rl.question('you> ').catch(() => '');
      if (line.trim() === '') break;
      io.log(`model> ${answer(line)}`);
    }
  } finally {
    rl.close();
  }
}
