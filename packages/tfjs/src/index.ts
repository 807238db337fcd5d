/**
 * @badam/tfjs — BAdam on TensorFlow.js: `BlockOptimizer` (a tf.Optimizer that trains one block at a
 * time with fresh state per block), `BlockOptimizerRatio` (masked sparse Adam), `AdamW` with decoupled
 * weight decay, run-time backend selection (cpu, wasm, tfjs-node, tfjs-node-gpu), and the backend's factory
 * (`createTfjsTrainerBackend`: a run's plan from core in, a trainer backend out).
 *
 * tfjs has no 16-bit float dtype, so weights are fp32 and BAdam's saving on tfjs comes from gradients and
 * optimizer state: about 4M + 12M/D bytes against Adam's 16M.
 *
 * @packageDocumentation
 */
export { AdamW, type AdamWOptions } from './adamw.js';
export {
  type BaseOptimizer,
  baseOptimizerName,
  disposeOptimizer,
  freshOptimizerLike,
  learningRateOf,
  setLearningRate,
  validateBaseOptimizer,
} from './base-optimizer.js';
export { BlockOptimizer, type BlockOptimizerOptions } from './block-optimizer.js';
export { BlockOptimizerRatio, type BlockOptimizerRatioOptions } from './block-optimizer-ratio.js';
export { globalNorm, sumOfSquares } from './global-norm.js';
export { assertGradientsRegistered } from './gradients-registered.js';
export { assignWeights, namedTensorsToArrays, variablesToArrays } from './named-arrays.js';
export type { NamedTensor } from './named-tensor.js';
export {
  blockPrefixesFromLayersModel,
  isVariable,
  type LayeredModelLike,
  type LayersModelLike,
  type LayerWeightLike,
  type NamedVariable,
  namedVariablesFromLayersModel,
  parameterInfoOf,
  validateNamedVariables,
} from './named-variables.js';
export { type NativeMatMulInfo, useNativeMatMul } from './native-kernels.js';
export { nonFiniteTensors } from './non-finite.js';
export { exportOptimizerState, importOptimizerState, type ParameterVariable } from './optimizer-state.js';
export { type PeakMemoryTracker, trackPeakMemory } from './peak-memory.js';
export { prepareTfjsBackend, TFJS_BACKEND_FLAGS } from './prepare-tfjs-backend.js';
export { TfjsBlockBackend, type TfjsBlockBackendOptions } from './tfjs-block-backend.js';
export {
  TfjsTrainerBackend,
  type TfjsTrainerBackendOptions,
  type TfjsTrainingTask,
} from './tfjs-trainer-backend.js';
export {
  createTfjsTrainerBackend,
  type TfjsTrainingModel,
  tfjsBackendModel,
} from './tfjs-trainer-backend-factory.js';
export { evaluateHeldOut, type HeldOutEvaluation } from './trainer/evaluate-held-out.js';
export { evaluateTask } from './trainer/tfjs-training-task.js';
export { TFJS_BACKEND_CHOICES, type TfjsBackendChoice, useTfjsBackend } from './use-tfjs-backend.js';
