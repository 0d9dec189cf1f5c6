import { test } from 'tap'
import { EventEmitter, once } from 'node:events'
import { connect, type Socket } from 'node:net'
import http2 from 'node:http2'
import type { FastifyInstance } from 'fastify'
import { startServer, type TestServer } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { onceWithin, signalled, waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import type { EventStream } from '../index'

// What an HTTP/1.1 or HTTP/2 client (or a proxy) can do on a connection that touches a long-lived response:
// each gets a correct response or a clean end, never a hang. Covered elsewhere: RST_STREAM, GOAWAY and a
// session destroyed (disconnect.test.ts), HEAD (lifecycle.test.ts), a client that stops reading
// (backpressure.test.ts), a frozen client at shutdown (shutdown.test.ts), oversized headers (last-event-id.test.ts).

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** A client on a raw TCP socket, for what node:http would not send: pipelining, HTTP/1.0, half-close. */
class RawClient extends EventEmitter {
  text = ''
  closed = false
  readonly socket: Socket

  constructor (socket: Socket) {
    super()
    this.socket = socket
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.text += chunk
      this.emit('change')
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      this.closed = true
      this.emit('change')
    })
  }

  async waitForText (text: string): Promise<void> {
    await waitUntil(this, 'change', () => (this.text.includes(text) ? true : undefined), `${JSON.stringify(text)} (got ${JSON.stringify(this.text)})`)
  }

  async waitForClose (): Promise<void> {
    await waitUntil(this, 'change', () => (this.closed ? true : undefined), 'the connection to close')
  }

  /** The status lines received, in order. */
  get statuses (): string[] {
    return this.text.match(/HTTP\/1\.\d \d{3}[^\r]*/g) ?? []
  }
}

async function rawConnect (t: Teardown, server: TestServer, request: string): Promise<RawClient> {
  const socket = connect(Number(new URL(server.origin).port), '127.0.0.1')
  t.teardown(() => socket.destroy())
  await onceWithin(socket, 'connect', 'a TCP connection')
  socket.write(request)
  return new RawClient(socket)
}

const get = (path: string, headers = ''): string => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${headers}\r\n`

interface Opened {
  /** Every stream opened, in order. */
  streams: EventStream[]
  events: EventEmitter
  /** What `/slow` waits for before it answers. */
  slow: { promise: Promise<void>, resolve: () => void }
}

/** `/push` opens a stream that sends `open`; `/slow` answers JSON once `opened.slow` is resolved. */
function routes (opened: Opened) {
  return (app: FastifyInstance): void => {
    app.get('/push', (request, reply) => {
      const stream = reply.sse()
      stream.send('open')
      opened.streams.push(stream)
      opened.events.emit('stream')
    })
    app.post('/push', (request, reply) => {
      const stream = reply.sse()
      stream.send({ event: 'body', data: request.body })
      opened.streams.push(stream)
      opened.events.emit('stream')
    })
    app.get('/slow', async () => {
      await opened.slow.promise
      return { slow: true }
    })
  }
}

function newOpened (): Opened {
  return { streams: [], events: new EventEmitter(), slow: signalled() }
}

async function nthStream (opened: Opened, n: number): Promise<EventStream> {
  return await waitUntil(opened.events, 'stream', () => opened.streams[n - 1], `stream ${n} to open`)
}

async function abortOf (stream: EventStream): Promise<string> {
  if (!stream.signal.aborted) await within(once(stream.signal, 'abort'), 'the stream\'s signal to abort')
  return (stream.signal.reason as { code: string }).code
}

test('http1: pipelined requests are answered in order, an event stream among them included', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'http1', routes(opened))

  // The stream's request arrives while the response before it is still being made: its response waits its turn.
  const behind = await rawConnect(t, server, get('/slow') + get('/push'))
  await nthStream(opened, 1)
  t.equal(behind.text, '', 'nothing yet: the stream waits for the response before it')
  opened.slow.resolve()
  await behind.waitForText('data: open\n\n')
  t.same(behind.statuses, ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'])
  t.match(behind.text, /\{"slow":true\}HTTP\/1\.1 200 OK\r\n[^]*content-type: text\/event-stream/, 'the JSON, then the stream')

  // A request behind a stream waits for the stream to end: then it is answered on the same connection.
  const after = await rawConnect(t, server, get('/push') + get('/slow'))
  const stream = await nthStream(opened, 2)
  await after.waitForText('data: open\n\n')
  t.same(after.statuses, ['HTTP/1.1 200 OK'], 'nothing for the second request while the stream is open')
  stream.close()
  await after.waitForText('{"slow":true}')
  t.same(after.statuses, ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK'], 'the second request answered once the stream ended')

  // A stream still queued when the client leaves is closed too: Node never says so of a response not yet sent.
  opened.slow = signalled()
  t.teardown(() => opened.slow.resolve())
  const gone = await rawConnect(t, server, get('/slow') + get('/push'))
  const queued = await nthStream(opened, 3)
  gone.socket.destroy()
  t.equal(await abortOf(queued), 'FST_SSE_CLIENT_CLOSED', 'the queued stream\'s signal aborts')
  t.same(server.logs.atLeast(WARN), [])
})

test('http1: a client that half-closes after its request gets a clean end', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'http1', routes(opened))
  const client = await rawConnect(t, server, get('/push'))
  await client.waitForText('data: open\n\n')
  const [stream] = opened.streams
  // A FIN from the client: Node ends the connection (no half-open HTTP), which ends the stream.
  client.socket.end()
  t.equal(await abortOf(stream), 'FST_SSE_CLIENT_CLOSED')
  await client.waitForClose()
  t.pass('the connection closed')
  t.same(server.logs.atLeast(WARN), [])
})

test('http1: an HTTP/1.0 client gets the events unchunked, and the connection closed at the end', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'http1', routes(opened))
  const client = await rawConnect(t, server, 'GET /push HTTP/1.0\r\n\r\n')
  await client.waitForText('data: open\n\n')
  t.match(client.text, /^HTTP\/1\.1 200 OK\r\n[^]*connection: close\r\n\r\ndata: open\n\n$/i, 'no chunk sizes: HTTP/1.0 has none')
  opened.streams[0].close()
  await client.waitForClose()
  t.pass('the end of the stream is the end of the connection, which is how HTTP/1.0 ends a body')
})

test('http1: Connection: close, then the stream ends: the connection closes after it', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'http1', routes(opened))
  const client = await rawConnect(t, server, get('/push', 'Connection: close\r\n'))
  await client.waitForText('data: open\n\n')
  opened.streams[0].close()
  await client.waitForClose()
  t.match(client.text, /data: open\n\n\r\n0\r\n\r\n$/, 'the last chunk, then the connection closed')
})

test('http1: a request body that never ends: the stream still opens, ends cleanly, and app.close() resolves', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'http1', routes(opened))
  // GET has no body for Fastify, which runs the handler at once; the client keeps sending chunks.
  const client = await rawConnect(t, server, get('/push', 'Transfer-Encoding: chunked\r\n') + '5\r\nhello\r\n')
  await client.waitForText('data: open\n\n')
  client.socket.write('5\r\nworld\r\n')
  await within(server.app.close(), 'app.close()')
  t.match(client.text, /retry: \d+\n\n\r\n0\r\n\r\n$/, 'the stream ended with its retry and the last chunk')
  await client.waitForClose()
  t.pass('the connection closed, though the request never ended')
})

for (const protocol of ['http1', 'h2c'] as const) {
  test(`${protocol}: Expect: 100-continue: the client gets 100 Continue, sends its body, then gets the stream`, async (t) => {
    const opened = newOpened()
    const server = await startServer(t, protocol, routes(opened))
    const body = '{"hello":"world"}'
    if (protocol === 'http1') {
      const client = await rawConnect(t, server, 'POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n' +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`)
      await client.waitForText('HTTP/1.1 100 Continue\r\n\r\n')
      client.socket.write(body)
      await client.waitForText('data: {"hello":"world"}\n\n')
      t.same(client.statuses, ['HTTP/1.1 100 Continue', 'HTTP/1.1 200 OK'])
    } else {
      const session = await connectSession(t, server)
      const request = session.request({ ':method': 'POST', ':path': '/push', 'content-type': 'application/json', expect: '100-continue' },
        { endStream: false })
      request.on('error', () => {})
      await onceWithin(request, 'continue', 'a 100 Continue')
      request.end(body)
      const [headers] = await onceWithin(request, 'response', 'the response') as [http2.IncomingHttpHeaders]
      t.equal(headers[':status'], 200)
      request.setEncoding('utf8')
      const [chunk] = await onceWithin(request, 'data', 'the first event') as [string]
      t.equal(chunk, 'event: body\ndata: {"hello":"world"}\n\n')
      request.close()
    }
  })
}

test('h2c: a request whose body never ends: the stream opens, and its end frees it on both sides', async (t) => {
  const opened = newOpened()
  // One stream at a time: a stream the server ended but never freed would keep the next one out.
  const server = await startServer(t, 'h2c', routes(opened), { plugin: { limits: { maxStreams: 1 } } })
  const session = await connectSession(t, server)
  const request = session.request({ ':path': '/push' }, { endStream: false })
  request.on('error', () => {})
  request.write('a body that goes on')
  request.setEncoding('utf8')
  let text = ''
  request.on('data', (chunk: string) => { text += chunk })
  await nthStream(opened, 1)
  opened.streams[0].close()
  await onceWithin(request, 'close', 'the client\'s stream to close')
  t.equal(text, 'data: open\n\n')
  t.equal(request.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'closed without error (RFC 9113 8.1: the rest of the request is not needed)')
  const next = await openStream(t, server, '/push')
  t.equal(next.status, 200, 'the place it held is free')
})

test('h2c: a client whose flow-control window is 0 gets its headers; its events wait; app.close() still resolves', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'h2c', routes(opened))
  const session = http2.connect(server.origin, { settings: { initialWindowSize: 0 } })
  t.teardown(() => session.destroy())
  session.on('error', () => {})
  const request = session.request({ ':path': '/push' })
  request.on('error', () => {})
  const [headers] = await onceWithin(request, 'response', 'the response headers') as [http2.IncomingHttpHeaders]
  t.equal(headers[':status'], 200, 'HEADERS are not flow-controlled: the stream opens')
  const stream = await nthStream(opened, 1)
  t.ok(stream.bufferedBytes > 0, 'its first event waits for the window')
  const closed = signalled()
  request.on('close', () => closed.resolve())
  await within(server.app.close(), 'app.close()')
  await within(closed.promise, 'the client\'s stream to close')
  t.equal(stream.bufferedBytes, 0, 'the server holds nothing for it')
})

test('h2c: RST_STREAM with any code ends the stream at once, and the session goes on', async (t) => {
  const opened = newOpened()
  const server = await startServer(t, 'h2c', routes(opened))
  const session = await connectSession(t, server)
  const { NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants
  const codes = [NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_ENHANCE_YOUR_CALM]
  for (const [index, code] of codes.entries()) {
    const request = session.request({ ':path': '/push' })
    request.on('error', () => {})
    await onceWithin(request, 'data', 'the first event')
    request.close(code)
    t.equal(await abortOf(await nthStream(opened, index + 1)), 'FST_SSE_CLIENT_CLOSED', `RST_STREAM ${code}`)
  }
  const last = await openStream(t, server, '/push', { session })
  await last.waitForEvents(1)
  t.pass('the session still opens streams')
  t.same(server.logs.atLeast(WARN), [])
})
