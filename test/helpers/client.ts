import { EventEmitter } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import type { IncomingHttpHeaders } from 'node:http'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { isHttp2, type TestServer } from './server'
import { waitUntil, DEFAULT_TIMEOUT_MS, within } from './wait'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface StreamOptions {
  headers?: Record<string, string>
  /** HTTP/2 only: open the stream on this session instead of a new one. */
  session?: ClientHttp2Session
  method?: string
  /** How long to wait for the response headers. */
  timeoutMs?: number
}

/**
 * A client of one event stream, over node:http2 or node:http(s), that parses what arrives with
 * eventsource-parser. It emits `change` whenever something arrives, so that tests wait for what they
 * expect instead of sleeping.
 */
export class SseClient extends EventEmitter {
  status = 0
  headers: IncomingHttpHeaders = {}
  text = ''
  readonly events: EventSourceMessage[] = []
  readonly comments: string[] = []
  readonly retries: number[] = []
  ended = false
  /** HTTP/1.1: true once the client's socket is closed. */
  socketClosed = false
  private readonly parser = createParser({
    onEvent: (event) => this.events.push(event),
    onComment: (comment) => this.comments.push(comment),
    onRetry: (retry) => this.retries.push(retry)
  })

  private stopReading: () => void = () => {}
  private startReading: () => void = () => {}
  private abort: () => void = () => {}

  /** @internal */
  attach (body: NodeJS.ReadableStream & EventEmitter, abort: () => void): void {
    body.setEncoding('utf8')
    body.on('data', (chunk: string) => {
      this.text += chunk
      this.parser.feed(chunk)
      this.emit('change')
    })
    const end = (): void => {
      if (this.ended) return
      this.ended = true
      this.emit('change')
    }
    body.on('end', end)
    body.on('close', end)
    body.on('error', end)
    this.abort = abort
    this.stopReading = () => body.pause()
    this.startReading = () => body.resume()
  }

  async waitForEvents (count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<EventSourceMessage[]> {
    return await waitUntil(this, 'change', () => (this.events.length >= count ? this.events : undefined),
      `${count} events (got ${this.events.length})`, timeoutMs)
  }

  async waitForComments (count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string[]> {
    return await waitUntil(this, 'change', () => (this.comments.length >= count ? this.comments : undefined),
      `${count} comments (got ${this.comments.length})`, timeoutMs)
  }

  async waitForEnd (timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await waitUntil(this, 'change', () => (this.ended ? true : undefined), 'the stream to end', timeoutMs)
  }

  async waitForSocketClose (timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    await waitUntil(this, 'change', () => (this.socketClosed ? true : undefined), 'the client socket to close', timeoutMs)
  }

  /** The client goes away: RST_STREAM over HTTP/2, the socket destroyed over HTTP/1.1. */
  close (): void {
    this.abort()
  }

  /** Stops reading: the client's window (HTTP/2) or socket buffer (HTTP/1.1) fills up. */
  pause (): void {
    this.stopReading()
  }

  resume (): void {
    this.startReading()
  }
}

/**
 * An HTTP/2 session to the server, destroyed when the test ends. `windowSize` sets the flow-control windows
 * of the session and of its streams (Node's default is 64 KiB; browsers use several MiB).
 */
export async function connectSession (t: Teardown, server: Pick<TestServer, 'origin' | 'ca'>,
  { windowSize }: { windowSize?: number } = {}): Promise<ClientHttp2Session> {
  const settings = windowSize === undefined ? undefined : { initialWindowSize: windowSize }
  const session = http2.connect(server.origin, { ca: server.ca, settings })
  t.teardown(() => session.destroy())
  session.on('error', () => {})
  await within(new Promise<void>((resolve, reject) => {
    session.once('connect', () => {
      if (windowSize !== undefined) session.setLocalWindowSize(windowSize)
      resolve()
    })
    session.once('error', reject)
  }), 'an HTTP/2 session')
  return session
}

/** Opens `path` as an event stream and resolves once the response headers are in. */
export async function openStream (t: Teardown, server: Pick<TestServer, 'protocol' | 'origin' | 'ca'>, path: string,
  options: StreamOptions = {}): Promise<SseClient> {
  const client = new SseClient()
  const headers = { accept: 'text/event-stream', ...options.headers }
  const method = options.method ?? 'GET'
  if (isHttp2(server.protocol)) {
    const session = options.session ?? await connectSession(t, server)
    const request: ClientHttp2Stream = session.request({ ':path': path, ':method': method, ...headers },
      { endStream: method === 'GET' || method === 'HEAD' })
    t.teardown(() => request.destroy())
    request.on('error', () => {})
    client.attach(request, () => request.close(http2.constants.NGHTTP2_CANCEL))
    const responseHeaders = await within(new Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>(
      (resolve, reject) => {
        request.once('response', resolve)
        request.once('error', reject)
      }), `the response headers of ${path}`, options.timeoutMs)
    client.status = Number(responseHeaders[':status'])
    client.headers = responseHeaders as IncomingHttpHeaders
    return client
  }
  const transport = server.protocol === 'http1-tls' ? https : http
  const request = transport.request(`${server.origin}${path}`, { method, headers, agent: false, ca: server.ca })
  request.once('socket', (socket) => socket.once('close', () => {
    client.socketClosed = true
    client.emit('change')
  }))
  t.teardown(() => request.destroy())
  request.on('error', () => {})
  const response = await within(new Promise<http.IncomingMessage>((resolve, reject) => {
    request.once('response', resolve)
    request.once('error', reject)
    request.end()
  }), `the response headers of ${path}`, options.timeoutMs)
  client.status = response.statusCode ?? 0
  client.headers = response.headers
  client.attach(response, () => request.destroy())
  return client
}
