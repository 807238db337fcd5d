import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ByteTokenizer,
  chatTemplate,
  encodeGenerationPrompt,
  encodePretraining,
  encodeSupervised,
  HfTokenizer,
  jinjaChatTemplate,
  loadInstructionDataset,
  renderChatTemplate,
} from '../src/index.js';

const tokenizer = new ByteTokenizer();
const root = mkdtempSync(join(tmpdir(), 'badam-data-hostile-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const hasMkfifo = spawnSync('mkfifo', ['--version']).status === 0;

describe('dataset files that are not what they claim', () => {
  it('a file that is not UTF-8 is refused with the file and the line, not trained on with bytes replaced', async () => {
    const path = join(root, 'latin1.jsonl');
    const lines = [
      Buffer.from('{"instruction": "a", "output": "b"}\n'),
      Buffer.from('{"instruction": "caf', 'utf8'),
      Buffer.from([0xe9]), // é in Latin-1
      Buffer.from('", "output": "x"}\n'),
    ];
    writeFileSync(path, Buffer.concat(lines));
    await expect(loadInstructionDataset(path)).rejects.toThrow(
      `dataset file must be a readable UTF-8 text file, got ${JSON.stringify(path)} (line 2 has a byte that is not UTF-8 (0xe9 at byte 56): convert the file to UTF-8`,
    );
  });

  it('a JSON file (dataset, dataset_info.json, tokenizer.json) with a byte order mark loads', async () => {
    const dir = join(root, 'bom');
    mkdirSync(dir);
    writeFileSync(join(dir, 'd.json'), `\uFEFF${JSON.stringify([{ instruction: 'a', output: 'b' }])}`);
    writeFileSync(join(dir, 'dataset_info.json'), `\uFEFF${JSON.stringify({ d: { file_name: 'd.json' } })}`);
    expect(await loadInstructionDataset(join(dir, 'd.json'))).toHaveLength(1);
    expect(await loadInstructionDataset('d', dir)).toHaveLength(1);
    const { tokenizer: json, config } = tokenizer.toHuggingFace();
    writeFileSync(join(dir, 'tokenizer.json'), `\uFEFF${JSON.stringify(json)}`);
    writeFileSync(join(dir, 'tokenizer_config.json'), `\uFEFF${JSON.stringify(config)}`);
    expect((await HfTokenizer.fromDirectory(dir)).encode('hi').length).toBeGreaterThan(0);
  });

  it('a named pipe, a device or a symbolic link loop as dataset or tokenizer file is refused, not read forever', async () => {
    const dir = join(root, 'special');
    mkdirSync(dir);
    const loop = join(dir, 'loop.json');
    symlinkSync(loop, loop);
    const device = join(dir, 'zero.jsonl');
    symlinkSync('/dev/zero', device);
    const cases: Array<[string, string]> = [
      [device, 'it is a device, which could be read forever: give a file'],
      [loop, 'it is a symbolic link that loops (ELOOP): point it at a file'],
    ];
    if (hasMkfifo) {
      const fifo = join(dir, 'pipe.jsonl');
      spawnSync('mkfifo', [fifo]);
      cases.push([fifo, 'it is a named pipe, which could be read forever: give a file']);
      spawnSync('mkfifo', [join(dir, 'tokenizer.json')]);
    }
    // Opened, a pipe would block (and the test time out) until a writer came.
    for (const [path, problem] of cases) {
      await expect(loadInstructionDataset(path)).rejects.toThrow(
        `dataset file must be a readable UTF-8 text file, got ${JSON.stringify(path)} (${problem})`,
      );
    }
    if (hasMkfifo)
      await expect(HfTokenizer.fromDirectory(dir)).rejects.toThrow(
        `tokenizer file must be a readable UTF-8 text file, got ${JSON.stringify(join(dir, 'tokenizer.json'))} (it is a named pipe`,
      );
  });

  it('a dataset_info.json that is null, or names a file by a number, is a clear error', async () => {
    const dir = join(root, 'info');
    mkdirSync(dir);
    const info = join(dir, 'dataset_info.json');
    writeFileSync(info, 'null');
    await expect(loadInstructionDataset('d', dir)).rejects.toThrow(
      `${info} must be a JSON object of dataset names, each with its file_name (LLaMA-Factory's dataset_info.json), got null`,
    );
    writeFileSync(info, JSON.stringify({ d: { file_name: 7 } }));
    await expect(loadInstructionDataset('d', dir)).rejects.toThrow(
      `${info} d.file_name must be the path of a local file, as a string (hub datasets cannot be downloaded here), got 7`,
    );
    writeFileSync(info, JSON.stringify({ d: null }));
    await expect(loadInstructionDataset('d', dir)).rejects.toThrow(
      `${info} d must be an object with file_name (and formatting, columns), got null`,
    );
  });
});

describe('long texts and token ids', () => {
  it('a text field of 300k tokens encodes (spreads into push overflowed the call stack)', () => {
    const long = 'x'.repeat(300_000);
    const example = { turns: [{ user: long, assistant: long }], system: '' };
    const template = chatTemplate('alpaca');
    const { examples } = encodeSupervised([example], tokenizer, template, { cutoffLen: 700_000 });
    expect(examples[0]!.inputIds.length).toBeGreaterThan(600_000);
    expect(encodePretraining([example], tokenizer, template, 700_000)[0]!.inputIds.length).toBeGreaterThan(
      600_000,
    );
    expect(encodeGenerationPrompt(template, tokenizer, [], long).length).toBeGreaterThan(300_000);
  });

  it("a token id at or above the model's vocab_size is found at encode time, naming the example", async () => {
    // A tokenizer with an added token (id 300) that a model of 259 ids was never resized for.
    const dir = join(root, 'added-token');
    mkdirSync(dir);
    const { tokenizer: json, config } = tokenizer.toHuggingFace();
    (json.added_tokens as object[]).push({
      ...{ id: 300, content: '<extra>', special: true },
      ...{ single_word: false, lstrip: false, rstrip: false, normalized: false },
    });
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    const extended = await HfTokenizer.fromDirectory(dir);
    const examples = [
      { turns: [{ user: 'fine', assistant: 'ok' }], system: '' },
      { turns: [{ user: 'use <extra> here', assistant: 'ok' }], system: '' },
    ];
    const template = chatTemplate('default');
    expect(() => encodeSupervised(examples, extended, template, { vocabSize: 259 })).toThrow(
      'token ids of example 1 ("use <extra> here") must be in [0, 259), the model\'s vocab_size, got 300 (the tokenizer gives ids the model has no embedding for: use the tokenizer saved with the model)',
    );
    expect(() => encodePretraining(examples, extended, template, 64, 259)).toThrow(
      'token ids of example 1 ("use <extra> here")',
    );
    expect(encodeSupervised(examples, extended, template, { vocabSize: 301 }).examples).toHaveLength(2);
  });
});

describe('chat templates render within limits', () => {
  const render = (source: string) =>
    renderChatTemplate({ ...jinjaChatTemplate({ source }).jinja! }, [{ role: 'user', content: 'hi' }], true);

  it('a nested range(100000) stops at once with a clear error', () => {
    const began = performance.now();
    expect(() =>
      render('{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'),
    ).toThrow(
      /range\(\) was asked for 100,000 elements, beyond the 100,000 that one rendering may make in all; pass --template with a built-in template instead/,
    );
    expect(performance.now() - began).toBeLessThan(30_000); // it ran 150 s; now it stops at the first inner range()
  });

  it('range(1000000000) is an error, not a fatal V8 error that kills Node', () => {
    expect(() => render('{% for i in range(1000000000) %}{{ i }}{% endfor %}')).toThrow(
      /range\(\) was asked for 1,000,000,000 elements/,
    );
  });

  it('a template that recurses for ever (2^40 macro calls) stops at the time limit', () => {
    const began = performance.now();
    expect(() =>
      render(
        '{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}',
      ),
    ).toThrow(/rendering took more than 2000 ms/);
    expect(performance.now() - began).toBeLessThan(30_000); // the limit is 2 s of wall time
  });

  it('a template whose text grows past the size limit stops', () => {
    expect(() =>
      render(
        "{% set s = namespace(t='x') %}{% for i in range(40) %}{% set s.t = s.t + s.t %}{% endfor %}{{ s.t }}",
      ),
    ).toThrow(/rendering made a text of [\d,]+ characters, more than 67,108,864/);
  });

  it("real templates still render, globals included (Llama 3.1's strftime_now)", () => {
    expect(render("{{ bos_token }}{{ strftime_now('%Y') }} {{ messages[0]['content'] }}")).toBe(
      `${new Date().getFullYear()} hi`,
    );
  });
});
