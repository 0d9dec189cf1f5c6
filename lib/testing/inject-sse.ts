import { once } from 'node:events'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { pipeline, type Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip } from 'node:zlib'
import type { FastifyInstance, HTTPMethods, InjectOptions } from 'fastify'
import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser'

/** What `injectSSE()` asks the app. */
export interface InjectSSEOptions {
  url: string
  /** @default 'GET' */
  method?: HTTPMethods
  /** Request headers. `accept: text/event-stream` is sent unless given, as `EventSource` sends it. */
  headers?: InjectOptions['headers']
  /** Sent as the `Last-Event-ID` header, as `EventSource` sends it when it reconnects. */
  lastEventId?: string
  /** A request body (an object is sent as JSON), for a stream opened by a POST. */
  payload?: InjectOptions['payload']
}

/** Any Fastify app: over HTTP/2 or HTTP/1.1, with TLS or not (inject needs none of its server). */
export type InjectableApp = Pick<FastifyInstance, 'inject'>

/** One event as a client receives it: `id` and `event` only when the event had them. */
export interface InjectedEvent {
  data: string
  id?: string
  event?: string
}

/**
 * The client end of a stream opened by `injectSSE()`: an async iterator of its events, as they come. It ends when the
 * stream does; `close()` (or leaving a `for await` early) goes away as a client would.
 */
export class InjectedStream implements AsyncIterableIterator<InjectedEvent> {
  /** The response's status code. */
  readonly status: number
  /** The response's headers, as a client reads them. */
  readonly headers: IncomingHttpHeaders
  /**
   * The body of an answer that is not an event stream (a `401` of a hook, a `503` refusal, JSON), read in full;
   * `undefined` for an event stream.
   */
  readonly body: string | undefined
  private readonly response: Readable & { destroyed: boolean }
  private readonly chunks: AsyncIterator<string> | undefined
  private readonly parser: EventSourceParser
  private readonly events: InjectedEvent[] = []
  private readonly responseClosed: Promise<unknown>
  private lastRetry: number | undefined
  private done = false

  /** @internal */
  constructor (status: number, headers: IncomingHttpHeaders, body: string | undefined,
    response: InjectedStream['response'], text: Readable | undefined) {
    this.status = status
    this.headers = headers
    this.body = body
    this.response = response
    this.responseClosed = response.destroyed ? Promise.resolve() : once(response, 'close')
    this.chunks = text?.[Symbol.asyncIterator]()
    if (text === undefined) this.done = true
    this.parser = createParser({
      onEvent: (message) => this.events.push(toInjectedEvent(message)),
      onRetry: (retry) => { this.lastRetry = retry }
    })
  }

  /** The last `retry:` the stream sent (ms), if it sent one yet. */
  get retry (): number | undefined {
    return this.lastRetry
  }

  /** The next event; done once the stream has ended (or was closed) and every event it sent was taken. */
  async next (): Promise<IteratorResult<InjectedEvent, undefined>> {
    while (this.events.length === 0 && !this.done) {
      let chunk: IteratorResult<string>
      try {
        chunk = await (this.chunks as AsyncIterator<string>).next()
      } catch {
        // The response was destroyed: by close(), or by the server (a client dropped), as a connection reset.
        chunk = { done: true, value: undefined }
      }
      if (chunk.done === true) this.done = true
      else this.parser.feed(chunk.value)
    }
    const event = this.events.shift()
    return event === undefined ? { done: true, value: undefined } : { done: false, value: event }
  }

  /** Leaving a `for await` early closes the stream, as a client that goes away. */
  async return (): Promise<IteratorResult<InjectedEvent, undefined>> {
    await this.close()
    return { done: true, value: undefined }
  }

  [Symbol.asyncIterator] (): this {
    return this
  }

  /**
   * Goes away as a client does: the route's stream ends with `FST_SSE_CLIENT_CLOSED`, its `signal` aborts and its source
   * is ended (a generator's `finally` runs). Resolves once the server has let go of it; the iterator then ends.
   */
  async close (): Promise<void> {
    this.done = true
    this.events.length = 0
    this.response.destroy()
    await this.responseClosed
    // What the close set off runs in promise jobs (a source's return(), its finally): they are over after this turn.
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/**
 * Opens a stream of the app with `app.inject()`: no port, no network, on an app that is only `ready()` (or not even:
 * inject makes it ready), and on routes that never end. Resolves once the response's headers are sent.
 */
export async function injectSSE (app: InjectableApp, options: InjectSSEOptions): Promise<InjectedStream> {
  const { url, method = 'GET', headers, lastEventId, payload } = options
  const requestHeaders: OutgoingHttpHeaders = { accept: 'text/event-stream', ...headers }
  if (lastEventId !== undefined) requestHeaders['last-event-id'] = lastEventId
  const response = await app.inject({ url, method, headers: requestHeaders, payload, payloadAsStream: true })
  const raw = response.raw.res as unknown as InjectedStream['response']
  const text = decoded(response.stream(), response.headers['content-encoding'])
  const eventStream = String(response.headers['content-type']).startsWith('text/event-stream')
  let body: string | undefined
  if (!eventStream) {
    body = ''
    for await (const chunk of text) body += chunk as string
  }
  // Every value a string, as light-my-request gives them.
  const responseHeaders = response.headers as IncomingHttpHeaders
  return new InjectedStream(response.statusCode, responseHeaders, body, raw, eventStream ? text : undefined)
}

/** The body as text, uncompressed when the stream was (its `compression` option). */
function decoded (body: Readable, encoding: unknown): Readable {
  const decompressor = encoding === 'br' ? createBrotliDecompress() : encoding === 'gzip' ? createGunzip() : undefined
  // pipeline(), not pipe(): the body destroyed (the client closed) destroys the decompressor too, which ends the reading.
  const text = decompressor === undefined ? body : pipeline(body, decompressor, ignoreError)
  // Decoded as a stream: a character split across chunks stays whole.
  return text.setEncoding('utf8')
}

// Whatever ended the pipeline ends the reading: the iterator reads that as the stream's end.
function ignoreError (): void {}

function toInjectedEvent (message: EventSourceMessage): InjectedEvent {
  const event: InjectedEvent = { data: message.data }
  if (message.id !== undefined) event.id = message.id
  if (message.event !== undefined) event.event = message.event
  return event
}
