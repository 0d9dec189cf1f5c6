/** The backoff bounds, in ms. */
export interface RetryBounds {
  min: number
  max: number
}

export const DEFAULT_RETRY: RetryBounds = { min: 1000, max: 30_000 }

// Each delay is drawn from itself to a fifth more, so that clients dropped together do not come back together.
const JITTER = 0.2

/**
 * How long to wait before attempt `failures` + 1, after `failures` attempts in a row that did not open a stream (1 after
 * a stream that opened and ended). `hint` is what the server asked for (its `Retry-After`, else its last `retry:`):
 * the first retry waits that long, as EventSource does; later ones wait the doubling backoff when it is longer, up
 * to `max` (a hint longer than `max` is still honoured). Without a hint, the backoff starts at `min`.
 */
export function retryDelay (failures: number, hint: number | undefined, { min, max }: RetryBounds,
  random: () => number = Math.random): number {
  const backoff = failures <= 1 ? hint ?? min : Math.min(max, min * 2 ** (failures - 1))
  const delay = Math.max(hint ?? 0, backoff)
  return Math.round(delay * (1 + JITTER * random()))
}

/** A `Retry-After` header (seconds, or an HTTP date) in ms from `now`, or undefined when absent or unreadable. */
export function parseRetryAfter (header: string | null, now = Date.now()): number | undefined {
  if (header === null) return undefined
  const value = header.trim()
  if (/^[0-9]+$/.test(value)) return Number(value) * 1000
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}
