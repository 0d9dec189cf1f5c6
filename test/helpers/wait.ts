import { once, type EventEmitter } from 'node:events'

export const DEFAULT_TIMEOUT_MS = 10_000

/**
 * Resolves when `check()` returns a value other than undefined, re-checking each time `emitter` emits
 * `eventName`; rejects with `what` after `timeoutMs`. Never polls on a timer.
 */
export async function waitUntil<T> (emitter: EventEmitter, eventName: string, check: () => T | undefined,
  what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  const first = check()
  if (first !== undefined) return first
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(eventName, onEvent)
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`))
    }, timeoutMs)
    function onEvent (): void {
      const value = check()
      if (value === undefined) return
      clearTimeout(timer)
      emitter.removeListener(eventName, onEvent)
      resolve(value)
    }
    emitter.on(eventName, onEvent)
  })
}

/** `events.once()` with a bound. */
export async function onceWithin (emitter: EventEmitter, eventName: string, what: string,
  timeoutMs = DEFAULT_TIMEOUT_MS): Promise<unknown[]> {
  return await within(once(emitter, eventName), what, timeoutMs)
}

/** Rejects with `what` if `promise` does not settle within `timeoutMs`. */
export async function within<T> (promise: Promise<T>, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** A promise with its resolve function, for a test to wait on something a handler signals. */
export function signalled<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let release!: (value: T) => void
  const promise = new Promise<T>((resolve) => { release = resolve })
  return { promise, resolve: release }
}
