#!/usr/bin/env node
/**
 * The `dbnorm` command line. Exit codes: 0 ok, 2 usage error, 1 runtime error — each failure prints
 * a one-line message (no stack trace) to stderr.
 * @module
 */
import { Command, CommanderError } from 'commander';

import { registerDemo } from './commands/demo.js';
import { registerEval } from './commands/eval.js';
import { registerTune } from './commands/tune.js';
import { DbnormError } from './errors.js';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { version } = require('../package.json') as { version: string };

/** Exit code for a usage error (bad flags, missing files on the command line). */
export const EXIT_USAGE = 2;
/** Exit code for a runtime error (bad data, failed computation). */
export const EXIT_RUNTIME = 1;

/** A usage error raised by a command's own checks (exit code 2). */
export class UsageError extends Error {}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('dbnorm')
    .description('hubness reduction for cross-modal retrieval (DBNorm and baselines)')
    .version(version)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s.split('\n')[0] + '\n') });
  registerDemo(program);
  registerEval(program);
  registerTune(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // help / version exit with code 0; everything else commander raises is a usage error
      return e.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`dbnorm: ${e.message}\n`);
      return EXIT_USAGE;
    }
    const msg = e instanceof DbnormError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
    process.stderr.write(`dbnorm: error: ${msg.split('\n')[0]}\n`);
    return EXIT_RUNTIME;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`dbnorm: error: ${String(e)}\n`);
      process.exitCode = EXIT_RUNTIME;
    },
  );
}
