/** Severity of a message from the BlockOptimizer. */
export type LogLevel = 'info' | 'warn';

/** Where the BlockOptimizer's messages go. The default writes info to stdout and warnings to stderr. */
export type LogFn = (message: string, level: LogLevel) => void;

/** The default {@link LogFn}: `console.log` for info, `console.warn` for warnings. */
export const consoleLog: LogFn = (message, level) => {
  if (level === 'warn') console.warn(message);
  else console.log(message);
};
