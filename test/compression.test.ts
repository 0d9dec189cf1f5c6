import { test } from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { createBrotliDecompress, createGunzip, type Gunzip, type BrotliDecompress } from 'node:zlib'
import { EventEmitter, once } from 'node:events'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { EventSource } from 'eventsource'
import Fastify from 'fastify'
import { startServer, isHttp2, type Protocol, type TestServer } from './helpers/server'
import { connectSession } from './helpers/client'
import { signalled, waitUntil, within } from './helpers/wait'
import sse, { type EventStream } from '../index'
import { WARN } from './helpers/logs'

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'h2', 'http1']

/** A stream read as the wire carries it: the compressed bytes counted, then decompressed and parsed. */
class CompressedClient extends EventEmitter {
  status = 0
  headers: Record<string, string | string[] | undefined> = {}
  wireBytes = 0
  readonly events: EventSourceMessage[] = []
  ended = false
  pause: () => void = () => {}

  async waitForEvents (count: number): Promise<void> {
    await waitUntil(this, 'change', () => (this.events.length >= count ? true : undefined),
      `${count} events (got ${this.events.length})`)
  }

  read (body: NodeJS.ReadableStream & EventEmitter): void {
    const encoding = this.headers['content-encoding']
    const decoder: Gunzip | BrotliDecompress | undefined = encoding === 'br'
      ? createBrotliDecompress()
      : encoding === 'gzip' ? createGunzip() : undefined
    const parser = createParser({ onEvent: (event) => { this.events.push(event); this.emit('change') } })
    const end = (): void => {
      this.ended = true
      this.emit('change')
    }
    body.on('data', (chunk: Buffer) => {
      this.wireBytes += chunk.length
      if (decoder === undefined) parser.feed(chunk.toString())
      else decoder.write(chunk)
    })
    body.on('end', () => {
      if (decoder === undefined) end()
      else decoder.end()
    })
    decoder?.on('data', (chunk: Buffer) => parser.feed(chunk.toString()))
    decoder?.on('end', end)
    // A stream cut short (the test's teardown) is not a whole compressed stream: that is no failure here.
    decoder?.on('error', end)
    this.pause = () => body.pause()
  }
}

async function open (t: tap.Test, server: TestServer, path: string, acceptEncoding?: string): Promise<CompressedClient> {
  const client = new CompressedClient()
  const headers: Record<string, string> = acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding }
  if (isHttp2(server.protocol)) {
    const session = await connectSession(t, server)
    const request = session.request({ ':path': path, ...headers })
    request.on('error', () => {})
    const response = await within(once(request, 'response'), 'the response headers') as [http2.IncomingHttpHeaders]
    client.headers = response[0]
    client.status = Number(response[0][':status'])
    client.read(request)
  } else {
    const request = http.get(`${server.origin}${path}`, { headers, agent: false })
    t.teardown(() => request.destroy())
    const [response] = await within(once(request, 'response'), 'the response headers') as [http.IncomingMessage]
    client.headers = response.headers
    client.status = response.statusCode as number
    client.read(response)
  }
  return client
}

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: a compressed stream delivers each event as it is sent, not when more come`, async (t) => {
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { handle.resolve(reply.sse()) })
    }, { plugin: { compression: true } })
    for (const [accepted, expected] of [['gzip, deflate, br', 'br'], ['gzip', 'gzip']]) {
      const client = await open(t, server, '/', accepted)
      const stream = await within(handle.promise, 'the handle')
      t.equal(client.headers['content-encoding'], expected, `accept-encoding: ${accepted} gets ${expected}`)
      t.equal(client.headers.vary, 'accept-encoding')
      t.match(client.headers['content-type'], /^text\/event-stream/)
      // Each event is sent only once the one before it has been decompressed by the client.
      for (let i = 0; i < 5; i++) {
        stream.send({ id: String(i), data: { i, text: 'x'.repeat(i * 10) } })
        await client.waitForEvents(i + 1)
      }
      t.same(client.events.map((event) => event.id), ['0', '1', '2', '3', '4'], 'one by one, in order')
      t.same(JSON.parse(client.events[4].data), { i: 4, text: 'x'.repeat(40) })
      stream.close()
      await waitUntil(client, 'change', () => client.ended || undefined, 'the end of the compressed stream')
      Object.assign(handle, signalled<EventStream>())
    }
  })
}

test('JSON events take a fraction of the bytes on the wire; no compression without the option or the client', async (t) => {
  const event = (i: number): object => ({
    data: { id: i, symbol: 'ACME', price: 100 + (i % 7) * 0.25, currency: 'EUR', exchange: 'XPAR', at: 1764064800000 + i * 1000 }
  })
  const routes = (app: Parameters<Parameters<typeof startServer>[2]>[0]): void => {
    app.get('/feed', (request, reply) => reply.sse(Array.from({ length: 500 }, (_, i) => event(i))))
    app.get('/plain', (request, reply) => reply.sse(Array.from({ length: 500 }, (_, i) => event(i)), { compression: false }))
    app.get('/gzip-only', (request, reply) => reply.sse(['one'], { compression: ['gzip'] }))
    app.get('/vary-origin', (request, reply) => reply.header('vary', 'origin').sse(['one']))
  }
  const server = await startServer(t, 'h2c', routes, { plugin: { compression: true } })
  const wire: Record<string, number> = {}
  for (const encoding of ['br', 'gzip', undefined]) {
    const client = await open(t, server, '/feed', encoding)
    await waitUntil(client, 'change', () => client.ended || undefined, 'the whole feed')
    t.equal(client.events.length, 500)
    t.equal(client.headers['content-encoding'], encoding)
    wire[encoding ?? 'identity'] = client.wireBytes
  }
  t.ok(wire.br < wire.identity / 4, `brotli: ${wire.br} bytes for ${wire.identity}`)
  t.ok(wire.gzip < wire.identity / 3, `gzip: ${wire.gzip} bytes for ${wire.identity}`)
  const identity = await open(t, server, '/feed')
  t.same([identity.headers['content-encoding'], identity.headers.vary], [undefined, 'accept-encoding'],
    'answered uncompressed, a route that compresses for others still says it varies by accept-encoding')
  t.equal((await open(t, server, '/vary-origin', 'gzip')).headers.vary, 'origin, accept-encoding', 'after the route\'s own vary')
  const plain = await open(t, server, '/plain', 'br')
  t.equal(plain.headers['content-encoding'], undefined, 'compression: false on one route')
  t.equal(plain.headers.vary, undefined, 'and does not vary')
  const refused = await open(t, server, '/feed', 'br;q=0, gzip;q=0, identity')
  t.same([refused.headers['content-encoding'], refused.headers.vary], [undefined, 'accept-encoding'], 'q=0 refuses an encoding')
  const wildcard = await open(t, server, '/gzip-only', '*')
  t.equal(wildcard.headers['content-encoding'], 'gzip', '* takes what the route offers')
  const brOnly = await open(t, server, '/gzip-only', 'br')
  t.equal(brOnly.headers['content-encoding'], undefined, 'nothing the client takes: no compression')

  const off = await startServer(t, 'h2c', routes)
  const uncompressed = await open(t, off, '/feed', 'gzip, br')
  t.equal(uncompressed.headers['content-encoding'], undefined, 'compression is off unless asked for')
})

test('a compressed stream is not dropped for what waits for the compressor, not for its client', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => { handle.resolve(reply.sse(app.sse.channel('news'))) })
  }, { plugin: { compression: ['br'], maxBufferedBytes: 16 * 1024 }, logLevel: 'warn' })
  const client = await open(t, server, '/news', 'br')
  const stream = await handle.promise
  const news = server.app.sse.channel('news')
  // Each turn hands brotli more than maxBufferedBytes, which its thread pool takes a while to compress.
  for (let turn = 0; turn < 30; turn++) {
    for (let i = 0; i < 20; i++) news.publish({ data: { turn, i, text: Math.random().toString(36).repeat(40) } })
    await new Promise((resolve) => setImmediate(resolve))
  }
  await client.waitForEvents(600)
  t.equal(stream.closed, false)
  t.same(server.logs.atLeast(WARN), [], 'nobody was dropped')
})

test('a push stream is not dropped while a busy thread pool holds its compressor back, and loses nothing', async (t) => {
  const { pbkdf2 } = await import('node:crypto')
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/push', (request, reply) => { handle.resolve(reply.sse()) })
  }, { plugin: { compression: ['gzip'], maxBufferedBytes: 16 * 1024 }, logLevel: 'warn' })
  const client = await open(t, server, '/push', 'gzip')
  const stream = await handle.promise
  // Every thread of the pool, which compresses, busy for a while (a CPU-bound app does this to it).
  let poolBusy = true
  const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4)
  const busy = Promise.all(Array.from({ length: poolSize }, async () => await new Promise((resolve) => {
    pbkdf2('password', 'salt', 200_000, 64, 'sha512', resolve)
  }))).then(() => { poolBusy = false })
  // Sent a turn apart without waiting for send()'s drain: far more than maxBufferedBytes waits to be compressed.
  const sent = 64
  for (let i = 0; i < sent; i++) {
    stream.send({ id: String(i), data: `${i} ${'x'.repeat(2000)}` })
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.ok(poolBusy, 'the pool was busy all along')
  t.equal(stream.closed, false, `not dropped, though ${stream.bufferedBytes} bytes wait for the compressor`)
  await within(busy, 'the thread pool to be free')
  await client.waitForEvents(sent)
  t.same(client.events.map((event) => event.id), Array.from({ length: sent }, (_, i) => String(i)), 'every event, in order')
  t.same(server.logs.atLeast(WARN), [], 'nobody was dropped')
})

test('a compressed stream whose client never reads stops its source; the channel path compresses too', async (t) => {
  let pulled = 0
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/endless', (request, reply) => reply.sse(function * () {
      for (let i = 0; ; i++) {
        pulled++
        // Random-looking data: compression cannot make the flow-control windows hold it all.
        yield { id: String(i), data: Math.random().toString(36).repeat(30) }
      }
    }))
    app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  }, { plugin: { compression: ['gzip'] } })
  const stuck = await open(t, server, '/endless', 'gzip')
  stuck.pause()
  const reader = await open(t, server, '/news', 'gzip')
  let published = 0
  // Time measured in events that the other stream gets: the count must settle, or this times out.
  let settled = -1
  while (settled !== pulled) {
    settled = pulled
    await server.app.sse.channel('news').publish(`tick ${published++}`)
    await reader.waitForEvents(published)
    await server.app.sse.channel('news').publish(`tick ${published++}`)
    await reader.waitForEvents(published)
  }
  t.ok(settled < 10_000, `${settled} events pulled for a client that reads nothing`)
  t.same(reader.events.map((event) => event.data), Array.from({ length: published }, (_, i) => `tick ${i}`))
})

test('compression options are checked', async (t) => {
  for (const compression of ['gzip', [], ['zstd'], ['gzip', 'deflate']]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(sse, { compression } as never) },
      { code: 'FST_SSE_INVALID_OPTION', message: /option compression must be a boolean, or a non-empty array of 'br', 'gzip'/ })
  }
  const server = await startServer(t, 'http1', (app) => {
    app.get('/', (request, reply) => reply.sse([], { compression: 'yes' as never }))
  })
  const response = await fetch(`${server.origin}/`)
  t.equal(response.status, 500)
  t.match(await response.json(), { code: 'FST_SSE_INVALID_OPTION' })
})

test('the eventsource package (fetch, which decompresses) gets compressed events one by one', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'http1', (app) => {
    app.get('/', (request, reply) => {
      t.match(request.headers['accept-encoding'], /gzip|br/, 'fetch asks for compression')
      handle.resolve(reply.sse())
    })
  }, { plugin: { compression: true } })
  const source = new EventSource(`${server.origin}/`)
  t.teardown(() => source.close())
  const received: string[] = []
  const arrived = new EventEmitter()
  source.onmessage = (message) => { received.push(message.data); arrived.emit('change') }
  const stream = await within(handle.promise, 'the stream')
  for (let i = 0; i < 5; i++) {
    stream.send(`event ${i}`)
    await waitUntil(arrived, 'change', () => received.length > i || undefined, `event ${i}`)
  }
  // Closed before the server, which it would otherwise reconnect to.
  source.close()
  t.same(received, ['event 0', 'event 1', 'event 2', 'event 3', 'event 4'])
})

for (const protocol of ['h2c', 'http1'] as Protocol[]) {
  test(`${protocol}: app.close() ends a compressed stream with its last bytes: the client reads a whole stream`, async (t) => {
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => { handle.resolve(reply.sse()) })
    }, { plugin: { compression: ['gzip'] } })
    const client = await open(t, server, '/', 'gzip')
    const stream = await within(handle.promise, 'the stream')
    stream.send('before the close')
    await client.waitForEvents(1)
    stream.send('sent as the server closes')
    await within(server.app.close(), 'app.close()')
    await waitUntil(client, 'change', () => client.ended || undefined, 'the end of the compressed stream')
    t.same(client.events.map((event) => event.data), ['before the close', 'sent as the server closes'],
      'every event, and a gzip stream that ends whole (the decompressor saw its end)')
  })
}
