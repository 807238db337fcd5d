import { BadamOptionError, roundToBfloat16, roundToFloat16 } from '@badam/core';
import type { DeviceTensor } from '../device-tensor.js';
import type { LlamaAttentionDims, LlamaOps } from './llama-ops.js';

/** Rounds one fp32 value as a tensor of `t`'s dtype would store it. */
function rounderOf(t: DeviceTensor): (x: number) => number {
  return t.dtype === 'bfloat16' ? roundToBfloat16 : t.dtype === 'float16' ? roundToFloat16 : Math.fround;
}

function ints(t: DeviceTensor): Int32Array {
  return t.readRaw() as Int32Array;
}

function rowsOf(t: DeviceTensor, width: number, what: string): number {
  if (t.numel % width !== 0)
    throw new BadamOptionError(what, `${t.numel} elements`, `a multiple of the row width ${width}`);
  return t.numel / width;
}

/** dst (fp32) += add, elementwise. */
function accumulateInto(dst: DeviceTensor, add: Float32Array): void {
  const values = dst.read();
  for (let i = 0; i < add.length; i++) values[i]! += add[i]!;
  dst.write(values);
}

/**
 * Issue 12's Llama ops computed on the host in fp32 from the tensors' values, each result written back
 * rounded to its tensor's dtype: the same math as the spec (and the C++ references), for devices whose
 * addon predates the kernels, and as an independent check of them. Slow: tests and tiny models only.
 */
export function hostLlamaOps(): LlamaOps {
  return {
    embedding(table, ids, out) {
      const width = table.shape[table.shape.length - 1]!;
      const rows = rowsOf(table, width, 'embedding table');
      const t = table.read();
      const id = ints(ids);
      const o = new Float32Array(id.length * width);
      for (let n = 0; n < id.length; n++) {
        const r = id[n]!;
        if (r < 0 || r >= rows) continue; // the caller validates ids; never read out of range
        o.set(t.subarray(r * width, (r + 1) * width), n * width);
      }
      out.write(o);
    },

    embeddingBackward(dOut, ids, dTable) {
      const width = dTable.shape[dTable.shape.length - 1]!;
      const rows = rowsOf(dTable, width, 'embedding gradient');
      const d = dOut.read();
      const id = ints(ids);
      const acc = new Float32Array(dTable.numel);
      for (let n = 0; n < id.length; n++) {
        const r = id[n]!;
        if (r < 0 || r >= rows) continue;
        for (let j = 0; j < width; j++) acc[r * width + j]! += d[n * width + j]!;
      }
      accumulateInto(dTable, acc);
    },

    rmsNorm(x, weight, out, rstd, eps) {
      const h = weight.numel;
      const n = rowsOf(x, h, 'rmsNorm x');
      const xs = x.read();
      const w = weight.read();
      const round = rounderOf(out);
      const o = new Float32Array(n * h);
      const r = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let ss = 0;
        for (let j = 0; j < h; j++) ss += xs[i * h + j]! ** 2;
        const ri = Math.fround(1 / Math.sqrt(ss / h + eps));
        r[i] = ri;
        for (let j = 0; j < h; j++) o[i * h + j] = w[j]! * round(xs[i * h + j]! * ri);
      }
      out.write(o);
      rstd.write(r);
    },

    rmsNormBackward(dOut, x, weight, rstd, dx, dWeight, accumulateDx) {
      const h = weight.numel;
      const n = rowsOf(x, h, 'rmsNormBackward x');
      const d = dOut.read();
      const xs = x.read();
      const w = weight.read();
      const r = rstd.read();
      const gx = accumulateDx ? dx.read() : new Float32Array(n * h);
      const gw = new Float32Array(h);
      for (let i = 0; i < n; i++) {
        const ri = r[i]!;
        // y = w * x * r, r = (mean(x^2) + eps)^-1/2: dx = r (w dy) - x r^3 mean(w dy x)
        let dot = 0;
        for (let j = 0; j < h; j++) dot += w[j]! * d[i * h + j]! * xs[i * h + j]!;
        const c = (dot / h) * ri * ri * ri;
        for (let j = 0; j < h; j++) {
          const k = i * h + j;
          gx[k]! += ri * w[j]! * d[k]! - xs[k]! * c;
          gw[j]! += d[k]! * xs[k]! * ri;
        }
      }
      dx.write(gx);
      if (dWeight !== null) accumulateInto(dWeight, gw);
    },

    rope(x, cos, sin, seqLen, heads, headDim, inverse) {
      const half = headDim / 2;
      const maxPos = cos.numel / half;
      if (seqLen > maxPos)
        throw new BadamOptionError('rope seqLen', seqLen, `at most ${maxPos} (the table's positions)`);
      const v = x.read();
      const c = cos.read();
      const s = sin.read();
      const width = heads * headDim;
      const rows = rowsOf(x, width, 'rope x');
      const sign = inverse ? -1 : 1;
      for (let n = 0; n < rows; n++) {
        const p = n % seqLen;
        for (let h = 0; h < heads; h++) {
          const base = n * width + h * headDim;
          for (let i = 0; i < half; i++) {
            const ci = c[p * half + i]!;
            const si = sign * s[p * half + i]!;
            const x1 = v[base + i]!;
            const x2 = v[base + i + half]!;
            v[base + i] = x1 * ci - x2 * si;
            v[base + i + half] = x2 * ci + x1 * si;
          }
        }
      }
      x.write(v);
    },

    attention(q, k, v, out, lse, dims) {
      const { batch, seqLen, heads, kvHeads, headDim: d } = dims;
      const scale = dims.scale ?? 1 / Math.sqrt(d);
      const lengths = lengthsOf(dims);
      const qs = q.read();
      const ks = k.read();
      const vs = v.read();
      const o = new Float32Array(out.numel);
      const l = new Float32Array(batch * heads * seqLen);
      const group = heads / kvHeads;
      const scores = new Float64Array(seqLen);
      for (let b = 0; b < batch; b++) {
        for (let h = 0; h < heads; h++) {
          const kh = Math.floor(h / group);
          for (let s = 0; s < seqLen; s++) {
            const qBase = (b * seqLen + s) * heads * d + h * d;
            const visible = Math.min(s + 1, lengths[b]!);
            let max = Number.NEGATIVE_INFINITY;
            for (let j = 0; j < visible; j++) {
              const kBase = (b * seqLen + j) * kvHeads * d + kh * d;
              let dot = 0;
              for (let i = 0; i < d; i++) dot += qs[qBase + i]! * ks[kBase + i]!;
              scores[j] = dot * scale;
              max = Math.max(max, scores[j]!);
            }
            if (visible === 0) continue; // no key: out 0, lse 0
            let sum = 0;
            for (let j = 0; j < visible; j++) sum += Math.exp(scores[j]! - max);
            for (let j = 0; j < visible; j++) {
              const p = Math.exp(scores[j]! - max) / sum;
              const vBase = (b * seqLen + j) * kvHeads * d + kh * d;
              for (let i = 0; i < d; i++) o[qBase + i]! += p * vs[vBase + i]!;
            }
            l[(b * heads + h) * seqLen + s] = max + Math.log(sum);
          }
        }
      }
      out.write(o);
      lse.write(l);
    },

    attentionBackward(q, k, v, out, dOut, lse, dq, dk, dv, dims) {
      const { batch, seqLen, heads, kvHeads, headDim: d } = dims;
      const scale = dims.scale ?? 1 / Math.sqrt(d);
      const lengths = lengthsOf(dims);
      const qs = q.read();
      const ks = k.read();
      const vs = v.read();
      const os = out.read();
      const dos = dOut.read();
      const l = lse.read();
      const gq = new Float32Array(dq.numel);
      const gk = new Float32Array(dk.numel);
      const gv = new Float32Array(dv.numel);
      const group = heads / kvHeads;
      for (let b = 0; b < batch; b++) {
        for (let h = 0; h < heads; h++) {
          const kh = Math.floor(h / group);
          for (let s = 0; s < seqLen; s++) {
            const qBase = (b * seqLen + s) * heads * d + h * d;
            const visible = Math.min(s + 1, lengths[b]!);
            const lseRow = l[(b * heads + h) * seqLen + s]!;
            let D = 0;
            for (let i = 0; i < d; i++) D += dos[qBase + i]! * os[qBase + i]!;
            for (let j = 0; j < visible; j++) {
              const kBase = (b * seqLen + j) * kvHeads * d + kh * d;
              let dot = 0;
              let dP = 0;
              for (let i = 0; i < d; i++) {
                dot += qs[qBase + i]! * ks[kBase + i]!;
                dP += dos[qBase + i]! * vs[kBase + i]!;
              }
              const p = Math.exp(dot * scale - lseRow);
              const dS = p * (dP - D) * scale;
              for (let i = 0; i < d; i++) {
                gq[qBase + i]! += dS * ks[kBase + i]!;
                gk[kBase + i]! += dS * qs[qBase + i]!;
                gv[kBase + i]! += p * dos[qBase + i]!;
              }
            }
          }
        }
      }
      dq.write(gq);
      dk.write(gk);
      dv.write(gv);
    },

    swiglu(gate, up, out) {
      const g = gate.read();
      const u = up.read();
      out.write(g.map((x, i) => (x / (1 + Math.exp(-x))) * u[i]!));
    },

    swigluBackward(gate, up, dOut, dGate, dUp) {
      const g = gate.read();
      const u = up.read();
      const d = dOut.read();
      const gg = new Float32Array(g.length);
      const gu = new Float32Array(g.length);
      for (let i = 0; i < g.length; i++) {
        const sig = 1 / (1 + Math.exp(-g[i]!));
        gu[i] = d[i]! * g[i]! * sig;
        gg[i] = d[i]! * u[i]! * sig * (1 + g[i]! * (1 - sig));
      }
      dGate.write(gg);
      dUp.write(gu);
    },

    add(a, b, out) {
      const x = a.read();
      const y = b.read();
      out.write(x.map((v, i) => v + y[i]!));
    },

    addBias(x, bias) {
      const c = bias.numel;
      const bs = bias.read();
      x.write(x.read().map((v, i) => v + bs[i % c]!));
    },

    biasBackward(dOut, dBias) {
      const c = dBias.numel;
      const d = dOut.read();
      const acc = new Float32Array(c);
      for (let i = 0; i < d.length; i++) acc[i % c]! += d[i]!;
      accumulateInto(dBias, acc);
    },

    crossEntropy(logits, labels, losses, gradScale) {
      const lb = ints(labels);
      const rows = lb.length;
      const vocab = logits.numel / rows;
      const x = logits.read();
      const loss = new Float32Array(rows);
      for (let n = 0; n < rows; n++) {
        const row = x.subarray(n * vocab, (n + 1) * vocab);
        const label = lb[n]!;
        if (label < 0) {
          if (gradScale !== 0) row.fill(0);
          continue;
        }
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < vocab; j++) max = Math.max(max, row[j]!);
        let sum = 0;
        for (let j = 0; j < vocab; j++) sum += Math.exp(row[j]! - max);
        const logSum = max + Math.log(sum);
        loss[n] = logSum - row[label]!;
        if (gradScale !== 0) {
          for (let j = 0; j < vocab; j++)
            row[j] = (Math.exp(row[j]! - logSum) - (j === label ? 1 : 0)) * gradScale;
        }
      }
      losses.write(loss);
      if (gradScale !== 0) logits.write(x);
    },

    argmaxRows(x, out) {
      const rows = out.numel;
      const width = x.numel / rows;
      const v = x.read();
      const best = new Int32Array(rows);
      for (let n = 0; n < rows; n++) {
        let arg = 0;
        for (let j = 1; j < width; j++) if (v[n * width + j]! > v[n * width + arg]!) arg = j;
        best[n] = arg;
      }
      out.write(best);
    },

    sum(x) {
      let s = 0;
      for (const v of x.read()) s += v;
      return s;
    },
  };
}

function lengthsOf(dims: LlamaAttentionDims): Int32Array {
  return dims.lengths ? ints(dims.lengths) : new Int32Array(dims.batch).fill(dims.seqLen);
}
