import { EventEmitter } from 'node:events'
import { Agent, fetch as undiciFetch } from 'undici'
import type { EventStreamClient, StreamErrorEvent, StreamEvent } from '../../lib/client/index.ts'
import { waitUntil } from './wait'

// What the client tests (test/client*.test.ts) watch a fastify-sse-h2/client do in Node.js.

export const WAIT_MS = 20_000

interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface Watched {
  /** Its `message` and `tick` events, in order. */
  events: StreamEvent[]
  errors: StreamErrorEvent[]
  opens: number
  /** Emits `change` whenever one of those arrives. */
  changes: EventEmitter
}

/** Records what a client does, and lets a test wait for it. */
export function watch (client: EventStreamClient): Watched {
  const seen: Watched = { events: [], errors: [], opens: 0, changes: new EventEmitter() }
  client.addEventListener('message', (event) => { seen.events.push(event); seen.changes.emit('change') })
  client.addEventListener('tick', (event) => { seen.events.push(event); seen.changes.emit('change') })
  client.addEventListener('error', (event) => { seen.errors.push(event); seen.changes.emit('change') })
  client.addEventListener('open', () => { seen.opens++; seen.changes.emit('change') })
  return seen
}

/** Waits until `check` returns a value, re-checked at each change. */
export async function until<T> (changes: EventEmitter, check: () => T | undefined, what: string): Promise<T> {
  return await waitUntil(changes, 'change', check, what, WAIT_MS)
}

export type TestFetch = (url: string, request: object) => Promise<never>

/**
 * A fetch of the client's own, whose connections the test ends: Node's fetch keeps the connection of a stream it
 * aborted, and app.close() then waits for keepAliveTimeout (72 s) before it lets go of it.
 */
export function ownFetch (t: Teardown): TestFetch {
  const dispatcher = new Agent()
  t.teardown(async () => await dispatcher.destroy())
  return async (url, request) => await undiciFetch(url, { ...request, dispatcher }) as never
}
