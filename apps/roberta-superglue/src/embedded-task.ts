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
  id2label: { '0': 'not_entailment', '1': 'entailment' },
} as const;

const ANIMALS = ['cat', 'dog', 'fox', 'owl', 'bee', 'cow', 'elk', 'yak'];
const OUTDOORS = ['garden', 'forest', 'field', 'river', 'park', 'beach'];
const INDOORS = ['kitchen', 'attic', 'cellar', 'garage', 'hallway', 'bedroom'];

/**
 * The embedded task, a small entailment problem: does the second sentence follow from the first?
 * (`The fox is in the garden.` / `The fox is outside.` -> entailed; `... is inside.` -> not). Labels are
 * balanced and neither sentence alone tells the answer — `outside` is as often right as wrong — so the
 * model has to relate the place in the premise to the claim in the hypothesis, as on RTE or CB.
 */
export function generatedPairTask(size: number, seed: number): TaskExample[] {
  const rng = SeededRandom.fromSeed(seed);
  const pick = <T>(items: readonly T[]) => items[rng.nextInt(items.length)]!;
  return Array.from({ length: size }, (_, i) => {
    const outdoors = rng.nextInt(2) === 0;
    const entailed = i % 2 === 0;
    const animal = pick(ANIMALS);
    const claimOutside = entailed ? outdoors : !outdoors;
    return {
      id: String(i),
      rows: [
        [
          `The ${animal} is in the ${pick(outdoors ? OUTDOORS : INDOORS)}.`,
          `The ${animal} is ${claimOutside ? 'outside' : 'inside'}.`,
        ],
      ],
      label: entailed ? 1 : 0,
    };
  });
}
