// Types of addon-sources.mjs, for the tests that read the lists.
export declare const hostSources: readonly string[];
export declare const engineSources: readonly string[];
export declare const cudaHostSources: readonly string[];
export declare const llamaKernelSources: readonly string[];
export declare const cudaSources: readonly string[];
export declare const glooSources: readonly string[];
