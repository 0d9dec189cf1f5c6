/** The `retry:` window of streams ended at shutdown, in whole milliseconds, min <= max. */
export interface ShutdownRetry {
  min: number
  max: number
}

/** `shutdownRetry`'s default: also the window of streams closed by a tag or for their lifetime, when parts are built alone. */
export const DEFAULT_SHUTDOWN_RETRY: ShutdownRetry = Object.freeze({ min: 1000, max: 10_000 })

/**
 * A reconnection delay drawn at random from the window, so that the clients of an instance that closes come
 * back (to another instance) spread over it, not all at once: with n clients, about n / (max - min) a millisecond.
 */
export function drawRetry ({ min, max }: ShutdownRetry): number {
  return min + Math.floor(Math.random() * (max - min + 1))
}

/** The same, in whole seconds for a `Retry-After` header (at least 1: 0 would ask for a retry at once). */
export function drawRetryAfter (window: ShutdownRetry): number {
  return Math.max(1, Math.ceil(drawRetry(window) / 1000))
}
