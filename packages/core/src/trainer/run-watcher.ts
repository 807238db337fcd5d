/**
 * A live view of training runs that a runner asks to show a run (`--board`): the runner calls {@link watch}
 * with the run's output directory before training starts, and the view reads what the run writes there
 * (`trainer_log.jsonl`, results files). The view is an app's (badam-board); a package only holds this
 * contract, so that no package depends on an app.
 */
export interface RunWatcher {
  /**
   * Shows the run writing to `outputDir`, starting the view the first time, and says where to look through
   * `io.log`. A view that cannot start says why through `io.warn` and resolves: the run goes on without it.
   */
  watch(outputDir: string, io: { log(message: string): void; warn(message: string): void }): Promise<void>;
}
