import { createHook } from 'node:async_hooks'
import type { EventEmitter } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { openStream, type SseClient } from './client'
import { startServer } from './server'
import { DEFAULT_TIMEOUT_MS } from './wait'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/**
 * Counts the timers alive in this process, unref'd ones included: `process.getActiveResourcesInfo()` lists
 * only the timers that keep the process running, and the heartbeat's timer is unref'd, so it never shows there.
 * Left out: the one timer of Node's Date header cache, which comes and goes with the second.
 */
export function trackTimers (t: Teardown): () => Promise<number> {
  const live = new Set<number>()
  const hook = createHook({
    init (asyncId, type, triggerAsyncId, resource) {
      if (type === 'Timeout' && (resource as { _onTimeout?: { name?: string } })._onTimeout?.name !== 'resetCache') {
        live.add(asyncId)
      }
    },
    destroy (asyncId) {
      live.delete(asyncId)
    }
  }).enable()
  t.teardown(() => { hook.disable() })
  return async () => {
    // Node reports a cleared timer's destroy from an immediate, not at once.
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    return live.size
  }
}

/**
 * What keeps this process running, counted by kind (`TCPSocketWrap`, `Timeout`, ...). Immediates are left out:
 * they are callbacks queued for the next turn of the loop (TLS teardown queues some), not resources held.
 */
export function activeResources (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const kind of process.getActiveResourcesInfo()) {
    if (kind !== 'Immediate') counts[kind] = (counts[kind] ?? 0) + 1
  }
  return counts
}

/** Every listener of every event of `emitter`, counted by event name. */
export function listenerCounts (emitter: EventEmitter): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of emitter.eventNames()) counts[String(name)] = emitter.listenerCount(name)
  return counts
}

let collect: (() => void) | undefined

/** Runs a full garbage collection; node needs no `--expose-gc` for it. */
export function gc (): void {
  if (collect === undefined) {
    setFlagsFromString('--expose-gc')
    collect = runInNewContext('gc') as () => void
  }
  collect()
}

/**
 * Server memory in bytes: the JS heap and what lives outside it (Buffers waiting to be written), after a
 * full collection, so that garbage not yet collected does not count.
 */
export async function memoryInUse (): Promise<number> {
  // WeakRefs and finalizers are cleared between turns of the loop: collect, let a turn pass, collect again.
  gc()
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  const { heapUsed, external } = process.memoryUsage()
  return heapUsed + external
}

/** Holds objects weakly, to count how many are still reachable after a collection. */
export class Reachable<T extends object> {
  private readonly refs: Array<WeakRef<T>> = []

  add (value: T): void {
    this.refs.push(new WeakRef(value))
  }

  get tracked (): number {
    return this.refs.length
  }

  async count (): Promise<number> {
    await memoryInUse()
    return this.refs.filter((ref) => ref.deref() !== undefined).length
  }
}

/**
 * Resolves once `read()` has kept the same value across `beats` heartbeats of `clock` (another stream, with a
 * short heartbeatInterval): time measured by the server's own timer instead of a sleep. Rejects if it never
 * settles within `timeoutMs`.
 */
export async function waitUntilSteady<T> (clock: SseClient, read: () => T, beats: number,
  what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let value = read()
  let steadyFrom = clock.comments.length
  while (clock.comments.length - steadyFrom < beats) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} to settle (at ${String(value)})`)
    await clock.waitForComments(clock.comments.length + 1, left)
    const now = read()
    if (now !== value) {
      value = now
      steadyFrom = clock.comments.length
    }
  }
  return value
}

/**
 * A stream from a server of its own that sends nothing but heartbeats, every 40 ms: a clock for tests whose
 * server keeps the default interval (so that nothing the test proves can come from a heartbeat).
 */
export async function startClock (t: Teardown): Promise<SseClient> {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 40 } })
  return await openStream(t, server, '/')
}
