import { Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import type { SseSourceContext } from '../core/events'
import type { StreamTransport } from './transport'
import { FST_SSE_INVALID_SOURCE } from '../core/errors'
import { describe } from '../core/describe'

type AnyIterator = Iterator<unknown> | AsyncIterator<unknown>

/** A source ready to be pulled: its iterator, and whether `next()` returns promises. */
export interface PulledSource {
  iterator: AnyIterator
  async: boolean
  /**
   * A Readable's iterator destroys it from its `finally`, which a `return()` before the first `next()` skips
   * (HEAD, a client already gone): the stream is destroyed directly then, so a file or cursor behind it closes.
   */
  readable: Readable | undefined
}

/**
 * Turns what the handler gave `reply.sse()` into an iterator, before anything is sent, so that a bad
 * source is a plain error response. A function is called with the stream's signal and last event id.
 */
export function openSource (source: unknown, context: SseSourceContext): PulledSource {
  const value = typeof source === 'function' ? source(context) : source
  if (value instanceof Readable) {
    // A byte stream carries text: decoding here keeps a character split across chunks whole.
    if (!value.readableObjectMode) value.setEncoding('utf8')
    return { iterator: value[Symbol.asyncIterator](), async: true, readable: value }
  }
  if (value !== null && typeof value === 'object') {
    if (Symbol.asyncIterator in value && typeof value[Symbol.asyncIterator] === 'function') {
      return { iterator: (value as AsyncIterable<unknown>)[Symbol.asyncIterator](), async: true, readable: undefined }
    }
    if (Symbol.iterator in value && typeof value[Symbol.iterator] === 'function') {
      return { iterator: (value as Iterable<unknown>)[Symbol.iterator](), async: false, readable: undefined }
    }
  }
  // A string is iterable, but one character per event is never what was meant.
  throw new FST_SSE_INVALID_SOURCE(describe(value))
}

/**
 * Pulls events from the source into the stream, one at a time, and stops pulling while the client is
 * behind. When the stream ends for any reason the iterator is ended with `return()`, so a generator's
 * `finally` runs; a source that throws is logged and its stream closed.
 */
export async function pump (stream: StreamTransport, source: PulledSource, log: FastifyBaseLogger): Promise<void> {
  const { iterator } = source
  let returned = false
  const endSource = (): void => {
    if (returned) return
    returned = true
    returnIterator(iterator, log)
    source.readable?.destroy()
  }
  // The client may leave while the source is waiting for its next event: end it now, not after.
  stream.signal.addEventListener('abort', endSource, { once: true })
  try {
    while (!stream.closed) {
      const step = source.async ? await iterator.next() : iterator.next() as IteratorResult<unknown>
      if (step.done === true) break
      if (!stream.sendPulled(step.value)) await stream.drained()
    }
  } catch (error) {
    // Logged unless it is the stream's own end.
    if (stream.closed) log.debug({ err: error }, 'fastify-sse-h2: the event source ended with an error after the stream closed')
    else log.error({ err: error }, 'fastify-sse-h2: the event source failed; the stream was closed')
  } finally {
    stream.close()
    endSource()
  }
}

function returnIterator (iterator: AnyIterator, log: FastifyBaseLogger): void {
  if (typeof iterator.return !== 'function') return
  try {
    const result = iterator.return()
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      (result as Promise<unknown>).then(undefined, (error: unknown) => logReturnError(log, error))
    }
  } catch (error) {
    logReturnError(log, error)
  }
}

function logReturnError (log: FastifyBaseLogger, error: unknown): void {
  log.error({ err: error }, 'fastify-sse-h2: the event source failed while it was being ended')
}
