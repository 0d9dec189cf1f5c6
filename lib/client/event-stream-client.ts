import type { ClientFetch, ClientHeaders, ClientResponse, ClientStorage, EventMap, EventStreamClientOptions } from './types.ts'
import { EventStreamParser } from './parser.ts'
import { MissedEvent, StreamErrorEvent, StreamEvent } from './events.ts'
import { DEFAULT_RETRY, parseRetryAfter, retryDelay, type RetryBounds } from './backoff.ts'

const CONNECTING = 0
const OPEN = 1
const CLOSED = 2
type ReadyState = typeof CONNECTING | typeof OPEN | typeof CLOSED

// Sent by fastify-sse-h2 (lib/protocol/response-headers.ts): the heartbeat interval, and the code of a refusal that
// an EventSource survives (200, a `retry:`, a comment `refused <code>`, and the end).
const HEARTBEAT_HEADER = 'sse-heartbeat'
const REFUSED_HEADER = 'sse-refused'
const REFUSED_COMMENT = /^refused (FST_SSE_[A-Z_]+)$/

/** The events a client dispatches, by type: its own, and those of the stream, typed by `Events`. */
export type ClientEventMap<Events extends EventMap> = {
  [Type in keyof Events & string]: StreamEvent<Events[Type], Type>
} & { open: Event, error: StreamErrorEvent, missed: MissedEvent }

type Listener<E> = ((this: EventStreamClient, event: E) => void) | { handleEvent: (event: E) => void }
type ListenerOptions = Parameters<EventTarget['addEventListener']>[2]
type AnyListener = Parameters<EventTarget['addEventListener']>[1]

interface IteratorQueue {
  events: StreamEvent[]
  wake: (() => void) | undefined
  error: Error | undefined
}

interface Failure {
  status?: number
  code?: string
  error?: unknown
  /** The server's `Retry-After`, in ms. */
  retryAfter?: number
}

/**
 * An event stream client with EventSource's surface (an EventTarget of `open`, `message`, named events and `error`;
 * `readyState`, `lastEventId`, `close()`) that also sends headers and bodies, reconnects after any answer worth
 * retrying with jitter and capped backoff, notices a dead connection by the server's heartbeat, keeps its last id in
 * a storage across reloads, and is an async iterable of its events.
 */
export class EventStreamClient<Events extends EventMap = EventMap> extends EventTarget {
  static readonly CONNECTING = CONNECTING
  static readonly OPEN = OPEN
  static readonly CLOSED = CLOSED
  readonly CONNECTING = CONNECTING
  readonly OPEN = OPEN
  readonly CLOSED = CLOSED
  /** The stream's URL, resolved. */
  readonly url: string
  private state: ReadyState = CONNECTING
  private readonly origin: string
  private readonly headers: ClientHeaders | undefined
  private readonly method: string
  private readonly body: EventStreamClientOptions['body']
  private readonly credentials: EventStreamClientOptions['credentials']
  private readonly fetcher: ClientFetch
  private readonly storage: ClientStorage | undefined
  private readonly storageKey: string
  private readonly bounds: RetryBounds
  private readonly binary: ReadonlySet<string>
  private readonly parser: EventStreamParser
  private readonly iterators = new Set<IteratorQueue>()
  private readonly handlers = new Map<string, AnyListener>()
  private controller: AbortController | undefined
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private silenceTimer: ReturnType<typeof setTimeout> | undefined
  private lastActivity = 0
  // The heartbeat interval the last stream said (ms; 0: none said): a reconnect must be answered within twice that.
  private heartbeat = 0
  // Attempts in a row that did not open a stream.
  private failures = 0
  // The server's last `retry:`, kept across connections as EventSource keeps it.
  private serverRetry: number | undefined
  private refusal: string | undefined
  private savedId: string | undefined

  constructor (url: string | URL, options: EventStreamClientOptions<Events> = {}) {
    super()
    const location = (globalThis as { location?: { href: string } }).location
    const resolved = new URL(String(url), location?.href)
    this.url = resolved.href
    this.origin = resolved.origin
    this.headers = options.headers
    this.method = options.method ?? 'GET'
    this.body = options.body
    this.credentials = options.credentials ?? 'same-origin'
    this.fetcher = options.fetch ?? ((input, request) => fetch(input, request as RequestInit) as Promise<ClientResponse>)
    this.storage = options.storage
    this.storageKey = options.storageKey ?? `fastify-sse-h2:${this.url}`
    this.bounds = { min: options.retry?.min ?? DEFAULT_RETRY.min, max: options.retry?.max ?? DEFAULT_RETRY.max }
    this.binary = new Set(options.binary ?? [])
    const stored = this.storage?.getItem(this.storageKey) ?? undefined
    this.savedId = stored
    this.parser = new EventStreamParser({
      dispatch: (type, data, lastEventId) => this.onEvent(type, data, lastEventId),
      retry: (ms) => { this.serverRetry = ms },
      comment: (text) => {
        const refused = REFUSED_COMMENT.exec(text)
        if (refused !== null) this.refusal = refused[1]
      }
    }, stored ?? options.lastEventId ?? '')
    // After the constructor's turn, as EventSource: an error at once (a headers() that throws) must reach the
    // listeners the page adds next.
    queueMicrotask(() => this.start())
  }

  /** CONNECTING (0): connecting or waiting to reconnect; OPEN (1): receiving; CLOSED (2): for good. */
  get readyState (): ReadyState {
    return this.state
  }

  /** The last event id received (or given, or stored): sent as `Last-Event-ID` at the next connect. */
  get lastEventId (): string {
    return this.parser.lastEventId
  }

  get onopen (): Listener<Event> | null {
    return this.handler('open')
  }

  set onopen (listener: Listener<Event> | null) {
    this.setHandler('open', listener)
  }

  get onmessage (): Listener<ClientEventMap<Events>['message']> | null {
    return this.handler('message')
  }

  set onmessage (listener: Listener<ClientEventMap<Events>['message']> | null) {
    this.setHandler('message', listener)
  }

  get onerror (): Listener<StreamErrorEvent> | null {
    return this.handler('error')
  }

  set onerror (listener: Listener<StreamErrorEvent> | null) {
    this.setHandler('error', listener)
  }

  private get closed (): boolean {
    return this.state === CLOSED
  }

  /** Closes the stream for good: no reconnect, no more events; iterators end. */
  close (): void {
    if (this.state === CLOSED) return
    this.state = CLOSED
    this.controller?.abort()
    clearTimeout(this.reconnectTimer)
    clearTimeout(this.silenceTimer)
    for (const queue of this.iterators) queue.wake?.()
  }

  /**
   * The stream's events (`message`, named ones, `missed`), as they come, each iterator from the moment it starts. It
   * ends when the client is closed; leaving the loop early closes the client; an end for good throws its error.
   */
  [Symbol.asyncIterator] (): AsyncIterableIterator<ClientEventMap<Events>[keyof Events & string]> {
    const queue: IteratorQueue = { events: [], wake: undefined, error: undefined }
    this.iterators.add(queue)
    const next = async (): Promise<IteratorResult<ClientEventMap<Events>[keyof Events & string], undefined>> => {
      for (;;) {
        const event = queue.events.shift()
        if (event !== undefined) return { done: false, value: event as ClientEventMap<Events>[keyof Events & string] }
        if (queue.error !== undefined) throw queue.error
        if (this.state === CLOSED) {
          this.iterators.delete(queue)
          return { done: true, value: undefined }
        }
        await new Promise<void>((resolve) => { queue.wake = resolve })
        queue.wake = undefined
      }
    }
    const iterator: AsyncIterableIterator<ClientEventMap<Events>[keyof Events & string]> = {
      next,
      return: async () => {
        this.iterators.delete(queue)
        this.close()
        return { done: true, value: undefined }
      },
      [Symbol.asyncIterator]: () => iterator
    }
    return iterator
  }

  private start (): void {
    // connect() handles every failure it expects; anything else is a bug, and must not pass in silence.
    this.connect().catch((error: unknown) => this.fail('the client failed', { error }))
  }

  private async connect (): Promise<void> {
    // Closed in the constructor's turn.
    if (this.closed) return
    const controller = new AbortController()
    this.controller = controller
    this.refusal = undefined
    // A reconnect that waits for its answer on a connection that died with the last stream (HTTP/2 puts every request
    // of an origin on one connection) is given up, as a silent stream is.
    const answerWithin = 2 * this.heartbeat
    const answerTimer = answerWithin > 0
      ? setTimeout(() => controller.abort(new Error(`no response for ${answerWithin} ms, twice the server's heartbeat interval`)), answerWithin)
      : undefined
    let response: ClientResponse
    try {
      const headers: Record<string, string> = {
        accept: 'text/event-stream',
        ...(typeof this.headers === 'function' ? await this.headers() : this.headers)
      }
      if (this.parser.lastEventId !== '') headers['last-event-id'] = this.parser.lastEventId
      if (this.closed) return
      response = await this.fetcher(this.url, {
        method: this.method, headers, body: this.body, signal: controller.signal, cache: 'no-store', credentials: this.credentials
      })
    } catch (error) {
      this.retryLater('the request failed', { error }, controller)
      return
    } finally {
      clearTimeout(answerTimer)
    }
    const { status } = response
    if (this.closed) {
      discard(response)
      return
    }
    if (status === 200 && (response.headers.get('content-type') ?? '').startsWith('text/event-stream') && response.body !== null) {
      await this.read(response, controller)
    } else if (status >= 500 || status === 429) {
      discard(response)
      this.retryLater(`HTTP ${status}`, { status, retryAfter: parseRetryAfter(response.headers.get('retry-after')) }, controller)
    } else {
      discard(response)
      this.fail(status === 200 ? 'the response is not an event stream' : `HTTP ${status}`, { status })
    }
  }

  private async read (response: ClientResponse, controller: AbortController): Promise<void> {
    this.refusal = response.headers.get(REFUSED_HEADER) ?? undefined
    if (this.refusal === undefined) {
      this.failures = 0
      this.state = OPEN
      this.dispatchEvent(new Event('open'))
    }
    const said = Number(response.headers.get(HEARTBEAT_HEADER))
    const heartbeat = said > 0 ? said : 0
    // A refusal says none: the interval of the streams before it holds.
    if (this.refusal === undefined) this.heartbeat = heartbeat
    this.lastActivity = Date.now()
    if (heartbeat > 0) this.watchSilence(2 * heartbeat, controller)
    const reader = (response.body as NonNullable<ClientResponse['body']>).getReader()
    const decoder = new TextDecoder()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        this.lastActivity = Date.now()
        this.parser.feed(decoder.decode(value, { stream: true }))
        this.saveId()
        if (this.closed) {
          // A listener closed the client: its abort ended the body, unless a fetch of one's own ignores the signal.
          reader.cancel().catch(() => {})
          return
        }
      }
    } catch (error) {
      this.parser.reset()
      this.retryLater('the connection was lost', { error }, controller)
      return
    } finally {
      clearTimeout(this.silenceTimer)
    }
    this.parser.reset()
    if (this.refusal !== undefined) {
      this.retryLater(`the server refused the stream: ${this.refusal}`, { status: response.status, code: this.refusal }, controller)
    } else {
      this.retryLater('the stream ended', {}, controller)
    }
  }

  private onEvent (type: string, data: string | undefined, lastEventId: string): void {
    if (data === undefined || this.state === CLOSED) return
    const event = type === 'missed'
      ? new MissedEvent(type, data, lastEventId, this.origin, false)
      : new StreamEvent(type, data, lastEventId, this.origin, this.binary.has(type))
    this.dispatchEvent(event)
    for (const queue of this.iterators) {
      queue.events.push(event)
      queue.wake?.()
    }
  }

  // Once per piece read: the events of a piece were all dispatched in this same turn, so a reload loses none of them.
  private saveId (): void {
    const id = this.parser.lastEventId
    if (this.storage === undefined || id === this.savedId) return
    this.savedId = id
    try {
      this.storage.setItem(this.storageKey, id)
    } catch {
      // A full or forbidden storage (Safari's private mode) costs the resume after a reload, not the stream.
    }
  }

  // A stream silent for twice the heartbeat interval is dead, wherever it broke: a proxy or a network that keeps the
  // connection and forwards nothing, a laptop that slept. Checked against the last read, so a busy stream sets no timer.
  private watchSilence (ms: number, controller: AbortController): void {
    const check = (): void => {
      const quiet = Date.now() - this.lastActivity
      if (quiet >= ms) controller.abort(new Error(`nothing received for ${quiet} ms, twice the server's heartbeat interval`))
      else this.silenceTimer = setTimeout(check, ms - quiet)
    }
    this.silenceTimer = setTimeout(check, ms)
  }

  private retryLater (message: string, failure: Failure, controller: AbortController): void {
    if (this.state === CLOSED || this.controller !== controller) return
    this.controller = undefined
    if (controller.signal.aborted && controller.signal.reason instanceof Error) failure.error = controller.signal.reason
    this.failures++
    const delay = retryDelay(this.failures, failure.retryAfter ?? this.serverRetry, this.bounds)
    this.state = CONNECTING
    this.dispatchEvent(new StreamErrorEvent(message, { ...failure, retryIn: delay }))
    if (this.state !== CONNECTING) return
    this.reconnectTimer = setTimeout(() => this.start(), delay)
  }

  private fail (message: string, failure: Failure): void {
    this.state = CLOSED
    this.controller = undefined
    const event = new StreamErrorEvent(message, failure)
    this.dispatchEvent(event)
    const error = Object.assign(new Error(`event stream ${this.url}: ${message}`), { status: failure.status })
    for (const queue of this.iterators) {
      queue.error = error
      queue.wake?.()
    }
  }

  private handler<E> (type: string): Listener<E> | null {
    return (this.handlers.get(type) ?? null) as Listener<E> | null
  }

  private setHandler (type: string, listener: unknown): void {
    const old = this.handlers.get(type)
    if (old !== undefined) this.removeEventListener(type, old)
    if (typeof listener === 'function' || (typeof listener === 'object' && listener !== null)) {
      this.handlers.set(type, listener as AnyListener)
      this.addEventListener(type, listener as AnyListener)
    } else {
      this.handlers.delete(type)
    }
  }
}

// Typed overloads of EventTarget's methods, merged into the class.
export interface EventStreamClient<Events extends EventMap = EventMap> {
  addEventListener: (<Type extends keyof ClientEventMap<Events> & string>(type: Type,
    listener: Listener<ClientEventMap<Events>[Type]> | null, options?: ListenerOptions) => void) &
  ((type: string, listener: AnyListener, options?: ListenerOptions) => void)
  removeEventListener: (<Type extends keyof ClientEventMap<Events> & string>(type: Type,
    listener: Listener<ClientEventMap<Events>[Type]> | null, options?: Parameters<EventTarget['removeEventListener']>[2]) => void) &
  ((type: string, listener: AnyListener, options?: Parameters<EventTarget['removeEventListener']>[2]) => void)
}

/** Lets go of a response's body that will not be read, so that its connection is freed. */
function discard (response: ClientResponse): void {
  response.body?.getReader().cancel().catch(() => {})
}
