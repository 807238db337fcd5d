// Bundles the board's two pages for the browser with esbuild: web/board-page.ts and web/finetune-page.ts
// (with uPlot, and for the fine-tune page @badam/core, @badam/tfjs, @badam/models, @badam/data and
// TensorFlow.js's WebGPU, WebGL and wasm backends) into dist/web, beside the HTML, tfjs's wasm binaries and
// the shipped pretrained start the fine-tune page loads.
//
// The workspace packages are written for Node as well: a few modules import node:fs and friends (loading and
// saving checkpoints, tokenizer files, datasets), and @badam/tfjs detects optional Node-only backends
// (@tensorflow/tfjs-node, @badam/native) with dynamic imports. The page uses none of that, so those imports
// resolve to a stand-in whose every function throws an error naming the module: the bundle stays clean, and a
// Node-only path reached by mistake says so instead of failing obscurely.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');
const require = createRequire(import.meta.url);

/** Modules the browser bundle must not contain: Node's built-ins and Node-only packages. */
const NODE_ONLY =
  /^(node:.*|fs|fs\/promises|path|os|url|crypto|child_process|worker_threads|module|util|stream|zlib|@badam\/native|@badam\/cuda|@tensorflow\/tfjs-node(-gpu)?)$/;

const nodeOnly = {
  name: 'node-only',
  setup(b) {
    b.onResolve({ filter: NODE_ONLY }, (args) => ({ path: args.path, namespace: 'node-only' }));
    b.onLoad({ filter: /.*/, namespace: 'node-only' }, (args) => ({
      loader: 'js',
      contents: `
        const name = ${JSON.stringify(args.path)};
        const fail = (member) => () => {
          throw new Error(name + '.' + member + ' is Node-only: the browser page cannot use it (load models and data in the page instead)');
        };
        module.exports = Object.create(new Proxy({}, {
          get: (_, member) => (typeof member !== 'string' || member === '__esModule' || member === 'then' ? undefined : fail(member)),
        }));`,
    }));
  },
};

await rm(out, { recursive: true, force: true });
await mkdir(join(out, 'wasm'), { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['web/board-page.ts', 'web/finetune-page.ts'],
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome113', 'firefox115', 'safari16'],
  minify: true,
  // No source maps: the package ships dist only, and a map would point at sources it does not have.
  sourcemap: false,
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
  plugins: [nodeOnly],
});

// One TensorFlow.js engine: two copies of tfjs-core would each keep their own backends and kernels.
const engines = Object.keys(result.metafile.inputs).filter((p) => p.endsWith('tfjs-core/dist/engine.js'));
if (engines.length !== 1) {
  throw new Error(
    `the fine-tune page bundles ${engines.length} copies of @tensorflow/tfjs-core (${engines.join(', ')}): make the workspace packages share one version`,
  );
}

for (const page of ['board.html', 'finetune.html']) await copyFile(join(root, 'web', page), join(out, page));
// The in-page fine-tune starts where `pnpm start` does: from @badam/embedded's shipped pretrained tiny Llama.
const pretrained = join(
  dirname(require.resolve('@badam/embedded/package.json')),
  'assets',
  'embedded-pretrained',
);
await mkdir(join(out, 'embedded-pretrained'), { recursive: true });
for (const file of ['model.safetensors', 'pretraining.json']) {
  await copyFile(join(pretrained, file), join(out, 'embedded-pretrained', file));
}
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.wasm'));
for (const file of (await readdir(wasmDir)).filter((f) => f.endsWith('.wasm'))) {
  await copyFile(join(wasmDir, file), join(out, 'wasm', file));
}
const sizes = Object.entries(result.metafile.outputs)
  .filter(([p]) => p.endsWith('.js'))
  .map(([p, o]) => `${p.split('/').at(-1)} ${(o.bytes / 1024).toFixed(0)} KiB`);
console.log(`bundled ${sizes.join(', ')} into dist/web`);
