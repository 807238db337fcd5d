// The pages import their style sheets; esbuild bundles them into a .css file beside the script.
declare module '*.css';
