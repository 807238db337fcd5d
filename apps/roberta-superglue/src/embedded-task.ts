import { SeededRandom } from '@badam/core';
import type { TaskExample } from '@badam/data';

/**
 * The built-in tiny RoBERTa of the embedded default: byte vocabulary (ids 0-255, then `<pad>` 256, `<s>`
 * 257, `</s>` 258), 4 layers, hidden 64. RoBERTa numbers positions from padding_idx + 1, so the position
 * table covers 256 + 2 + 128 rows for 128-token rows.
 */
export const TINY_ROBERTA_CONFIG = {
  architectures: ['RobertaForSequenceClassification'],
  model_type: 'roberta',
  vocab_size: 259,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  max_position_embeddings: 256 + 2 + 128,
  type_vocab_size: 1,
  layer_norm_eps: 1e-5,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  pad_token_id: 256,
  bos_token_id: 257,
  eos_token_id: 258,
  num_labels: 2,
  id2label: { '0': 'different', '1': 'same' },
} as const;

const ANIMALS = ['cat', 'dog', 'fox', 'owl', 'bee', 'cow', 'elk', 'yak'];
const PLACES = ['garden', 'forest', 'field', 'river', 'barn', 'park'];

/**
 * The embedded task: does the second sentence name the same animal as the first? (`I saw a fox in the
 * park.` / `There was a fox near the barn.` -> same). Balanced labels; the places differ at random, so the
 * model has to compare the animals across the pair — what an entailment head learns on SuperGLUE.
 */
export function generatedPairTask(size: number, seed: number): TaskExample[] {
  const rng = SeededRandom.fromSeed(seed);
  const pick = <T>(items: readonly T[]) => items[rng.nextInt(items.length)]!;
  return Array.from({ length: size }, (_, i) => {
    const animal = pick(ANIMALS);
    const same = i % 2 === 0;
    let other = pick(ANIMALS);
    while (!same && other === animal) other = pick(ANIMALS);
    return {
      id: String(i),
      rows: [
        [
          `I saw a ${animal} in the ${pick(PLACES)}.`,
          `There was a ${same ? animal : other} near the ${pick(PLACES)}.`,
        ],
      ],
      label: same ? 1 : 0,
    };
  });
}
