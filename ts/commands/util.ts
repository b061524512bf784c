import { InvalidArgumentError } from 'commander';

/** Parses a positive integer option (commander turns the thrown error into a usage error, exit 2). */
export function intOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected an integer ≥ 1, got '${v}'`);
  return n;
}

/** Parses a finite positive number option. */
export function positiveOption(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a number > 0, got '${v}'`);
  return n;
}

/** Parses a finite non-negative number option. */
export function nonNegativeOption(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a number ≥ 0, got '${v}'`);
  return n;
}

/** Progress and warnings go to stderr; stdout carries only results. */
export function log(msg: string): void {
  process.stderr.write(msg + '\n');
}
