import { test } from 'tap'
import { PROTOCOLS, isHttp2, startServer } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled } from './helpers/wait'
import { WARN } from './helpers/logs'
import { laterStore } from './helpers/store-over'
import { MemoryStore } from '../index'

// Node's HTTP/2 compatibility layer drops a connection-specific header with an UnsupportedWarning, and
// only the first time in a process: listening from the file's first line, no test here can miss it.
const warnings: Error[] = []
process.on('warning', (warning) => { warnings.push(warning) })
const warningsSeen = (): string[] => warnings.map((warning) => `${warning.name}: ${warning.message}`)

const CONNECTION_SPECIFIC = {
  connection: 'keep-alive',
  'keep-alive': 'timeout=5',
  'proxy-connection': 'keep-alive',
  'transfer-encoding': 'chunked',
  upgrade: 'websocket',
  te: 'gzip',
  'http2-settings': 'AAMAAABkAAQAAP__'
}

for (const protocol of PROTOCOLS) {
  test(`${protocol}: the SSE headers are sent at once, before the source has anything to say`, async (t) => {
    const release = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/events', (request, reply) => reply.sse(async function * () {
        await release.promise
        yield 'first'
      }))
    })

    // The source yields nothing until released: openStream resolves only if the headers came without it.
    const client = await openStream(t, server, '/events')
    t.equal(client.status, 200)
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    t.equal(client.headers['cache-control'], 'no-cache, no-transform')
    t.equal(client.headers['x-accel-buffering'], 'no')
    t.equal(client.headers['content-length'], undefined, 'a stream has no length')
    t.same(client.events, [], 'no event before the source was released')
    t.equal(client.text, '', 'no byte of body before the source was released')

    release.resolve()
    await client.waitForEvents(1)
    await client.waitForEnd()
    t.same(client.events.map((event) => event.data), ['first'])
    t.same(server.logs.atLeast(WARN), [], 'nothing logged as a warning or an error')
    t.same(warningsSeen(), [], 'no process warning')
  })

  test(`${protocol}: the handler's status and headers are kept, but not its content type or length`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/events', (request, reply) => {
        reply.code(203)
          .header('x-request-tag', 'abc')
          .header('set-cookie', ['a=1', 'b=2'])
          .header('cache-control', 'no-store')
          .header('content-type', 'application/json')
          .header('content-length', '12')
        return reply.sse(['hello'])
      })
    })
    const client = await openStream(t, server, '/events')
    t.equal(client.status, 203, 'the status set with reply.code()')
    t.equal(client.headers['x-request-tag'], 'abc')
    t.same(client.headers['set-cookie'], ['a=1', 'b=2'])
    t.equal(client.headers['cache-control'], 'no-store', 'the handler may choose its own cache policy')
    t.equal(client.headers['x-accel-buffering'], 'no')
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8', 'the content type is always SSE')
    t.equal(client.headers['content-length'], undefined, 'a content length would cut the stream short')
    await client.waitForEnd()
    t.same(client.events.map((event) => event.data), ['hello'], 'the stream is not cut at 12 bytes')
    t.same(server.logs.atLeast(WARN), [])
    t.same(warningsSeen(), [], 'no process warning')
  })

  test(`${protocol}: connection-specific headers set by the handler never break the stream nor make a warning`, async (t) => {
    const server = await startServer(t, protocol, (app) => {
      app.get('/events', (request, reply) => {
        reply.headers(CONNECTION_SPECIFIC).header('x-request-tag', 'kept')
        const stream = reply.sse()
        stream.send('hello')
        stream.close()
      })
    })
    const client = await openStream(t, server, '/events')
    await client.waitForEnd()
    t.equal(client.status, 200)
    t.equal(client.headers['x-request-tag'], 'kept', 'the other headers are kept')
    t.same(client.events.map((event) => event.data), ['hello'])
    if (isHttp2(protocol)) {
      // RFC 9113 8.2.2: an HTTP/2 message with one of them is malformed; Node refuses to send most of them.
      for (const name of Object.keys(CONNECTION_SPECIFIC)) t.equal(client.headers[name], undefined, `no ${name} header over HTTP/2`)
    }
    t.same(server.logs.atLeast(WARN), [])
    t.same(warningsSeen(), [], 'no UnsupportedWarning, nor any other process warning')
  })
}

// Node refuses a header value with a line break over HTTP/1.1 (HTTP/2 lets it through).
for (const protocol of PROTOCOLS.filter((protocol) => !isHttp2(protocol))) {
  test(`${protocol}: a header Node refuses is an ordinary error response, not a request left hanging`, async (t) => {
    const signals: AbortSignal[] = []
    const server = await startServer(t, protocol, (app) => {
      app.get('/events', (request, reply) => {
        reply.header('x-bad', 'line\nbreak')
        return reply.sse(({ signal }) => { signals.push(signal); return ['never sent'] })
      })
      app.get('/push', (request, reply) => { reply.header('x-bad', 'line\nbreak').sse().send('never sent') })
      // Its store answers on a later turn: the headers are written then, after the handler returned.
      app.get('/channel', (request, reply) => reply.header('x-bad', 'line\nbreak').sse(app.sse.channel('news')))
    }, { plugin: { store: laterStore(new MemoryStore()) } })
    for (const path of ['/events', '/push', '/channel']) {
      const client = await openStream(t, server, path)
      await client.waitForEnd()
      t.equal(client.status, 500, path)
      t.not(client.headers['content-type'], 'text/event-stream; charset=utf-8')
      t.match(JSON.parse(client.text), { statusCode: 500, code: 'ERR_INVALID_CHAR' })
    }
    t.equal(signals.length, 1)
    t.match(signals[0].reason, { code: 'ERR_INVALID_CHAR' }, 'the source was told, through its signal')
    t.same(warningsSeen(), [], 'no process warning')
  })
}
