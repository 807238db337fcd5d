/**
 * What BAdam's data pipeline needs from a tokenizer. Implemented by {@link ByteTokenizer} (built in) and
 * `HfTokenizer` (a Hugging Face tokenizer.json through @huggingface/tokenizers).
 */
export interface Tokenizer {
  /** Token ids of `text`. Special tokens written in the text (`</s>`, `<|eot_id|>`) become their ids. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; with `skipSpecialTokens` the special tokens are left out. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** The id of a token string, if it is in the vocabulary. */
  tokenToId(token: string): number | undefined;
  readonly vocabSize: number;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  /** Padding id (labels are -100 there, so any id works; the eos id when the tokenizer has none). */
  readonly padTokenId: number;
}
