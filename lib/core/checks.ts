import { FST_SSE_INVALID_OPTION } from './errors'
import { describe } from './describe'

/** Throws FST_SSE_INVALID_OPTION, naming the option, what it must be and (briefly) what it was. */
export function check (name: string, valid: boolean, expected: string, value: unknown): void {
  if (!valid) throw new FST_SSE_INVALID_OPTION(name, expected, describe(value))
}

export function isWholeNumberUpTo (value: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max
}
