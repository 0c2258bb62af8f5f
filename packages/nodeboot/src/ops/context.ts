/**
 * What the node commands share with postboot: a StepContext whose console and log lines are
 * collected instead of printed (stdout carries the command's own report, `--json` included).
 */
import { PostbootLog, type StepContext } from '../postboot/context.js';
import type { NodeSystem } from '../system.js';

/** The log of a node command: lines kept in memory (the command prints what it decides to). */
class CollectedLog extends PostbootLog {
  constructor(
    system: NodeSystem,
    private readonly sink: string[],
  ) {
    super(system, system.now());
  }

  override async line(message: string): Promise<void> {
    this.sink.push(message);
  }
}

export interface OpsContext extends StepContext {
  /** Log lines of the steps reused from postboot (why a kept document was ignored, a retried fetch…). */
  readonly notes: string[];
}

/**
 * The system with console() collected into `notes` (LinuxSystem run by hand writes console lines
 * to stdout); every other method is the system's own (the object inherits from it).
 */
export function opsContext(system: NodeSystem): OpsContext {
  const notes: string[] = [];
  const quiet: NodeSystem = Object.create(system, {
    console: { value: (line: string) => notes.push(line) },
  });
  return { system: quiet, log: new CollectedLog(quiet, notes), notes };
}
