import { inspect } from 'node:util'

/** A short description of a bad value for an error message; never the whole value. */
export function describe (value: unknown): string {
  return inspect(value, { depth: 0, maxArrayLength: 3, maxStringLength: 40, breakLength: Infinity })
}
