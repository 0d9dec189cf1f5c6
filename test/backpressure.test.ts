import { test } from 'tap'
import { startServer, type Protocol } from './helpers/server'
import { openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import type { EventStream } from '../index'

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'h2', 'http1']
const payload = 'x'.repeat(1000)

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: a client that never reads stops the source, memory stays flat, and nothing is lost`, async (t) => {
    let pulled = 0
    const server = await startServer(t, protocol, (app) => {
      app.get('/endless', (request, reply) => reply.sse(function * () {
        for (let i = 0; ; i++) {
          pulled++
          yield { id: String(i), data: payload }
        }
      }))
      app.get('/clock', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 40 } })
    const clock = await openStream(t, server, '/clock')
    const stuck = await openStream(t, server, '/endless')
    stuck.pause()
    // Time passes, measured in heartbeats of another stream: the pulled count must settle.
    await clock.waitForComments(5)
    const settled = pulled
    const heapBefore = process.memoryUsage().heapUsed
    await clock.waitForComments(25)
    t.equal(pulled, settled, `the source was not pulled while the client was behind (${settled} events pulled)`)
    // HTTP/2: the client's flow-control windows (64 KiB) and the stream's buffer. HTTP/1.1: the kernel's socket
    // buffers, which on loopback hold a few MiB, and no more.
    const bound = protocol === 'http1' ? 8000 : 1000
    t.ok(settled < bound, `fewer than ${bound} events of 1 KB: what the buffers on the way hold, not what the source can make`)
    const growth = process.memoryUsage().heapUsed - heapBefore
    t.ok(growth < 8 * 1024 * 1024, `heap did not grow with time (${Math.round(growth / 1024)} KiB)`)
    stuck.resume()
    await stuck.waitForEvents(settled + 500)
    t.ok(stuck.events.every((event, i) => event.id === String(i) && event.data === payload), 'every event, in order, no gap')
  })
}

test('push: send() says when the client is behind, drained() says when it caught up', async (t) => {
  const handle = signalled<EventStream>()
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { handle.resolve(reply.sse()) })
  }, { plugin: { maxBufferedBytes: 16 * 1024 * 1024 } })
  const client = await openStream(t, server, '/')
  client.pause()
  const stream = await within(handle.promise, 'the handle')
  let sent = 0
  while (stream.send({ id: String(sent), data: payload })) sent++
  sent++
  t.ok(sent > 1, `send() returned true until the client fell behind (${sent} events)`)
  let drained = false
  const waiting = stream.drained().then(() => { drained = true })
  // Fill past the flow-control windows so that the wait is real.
  for (let i = 0; i < 200; i++, sent++) stream.send({ id: String(sent), data: payload })
  t.equal(drained, false)
  client.resume()
  await within(waiting, 'drained()')
  await client.waitForEvents(sent)
  t.ok(client.events.every((event, i) => event.id === String(i)), 'all of them, in order')
  t.equal(await stream.drained(), undefined, 'drained() resolves at once when nothing waits')
  stream.close()
  t.equal(await stream.drained(), undefined, 'and once closed')
})

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: a push stream over maxBufferedBytes is closed with a warning; others are untouched`, async (t) => {
    const handles: EventStream[] = []
    const opened = signalled()
    const server = await startServer(t, protocol, (app) => {
      app.get('/', (request, reply) => {
        handles.push(reply.sse())
        if (handles.length === 2) opened.resolve()
      })
    }, { plugin: { maxBufferedBytes: 64 * 1024 } })
    const slow = await openStream(t, server, '/')
    slow.pause()
    const fine = await openStream(t, server, '/')
    await within(opened.promise, 'two streams')
    const [slowStream, fineStream] = handles
    let sent = 0
    while (!slowStream.closed && sent < 10_000) {
      slowStream.send({ data: payload })
      sent++
    }
    t.ok(slowStream.closed, `the slow stream was closed after ${sent} events`)
    t.match(slowStream.signal.reason, { code: 'FST_SSE_SLOW_CLIENT', message: /over maxBufferedBytes \(65536\)/ })
    const warning = await server.logs.waitFor((record) => record.level === 40, 'the warning')
    t.match(warning, { msg: /fell behind/, maxBufferedBytes: 65536 })
    t.type(warning.reqId, 'string')
    slow.resume()
    await slow.waitForEnd()
    fineStream.send('still fine')
    await fine.waitForEvents(1)
    t.equal(fine.events[0].data, 'still fine')
    t.equal(server.logs.atLeast(40).length, 1)
  })
}
