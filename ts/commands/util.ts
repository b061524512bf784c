import { InvalidArgumentError } from 'commander';

/** Parses a positive integer option (commander turns the thrown error into a usage error, exit 2). */
export function intOption(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1 || n > 0xffffffff) throw new InvalidArgumentError(`expected an integer in [1, 4294967295], got '${v}'`);
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
