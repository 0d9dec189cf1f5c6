import { test } from 'tap'
import { startServer, isHttp2, type Protocol } from './helpers/server'
import { connectSession, openStream } from './helpers/client'
import { signalled, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { memoryInUse, waitUntilSteady } from './helpers/resources'
import type { EventStream } from '../index'

const PROTOCOLS_UNDER_TEST: Protocol[] = ['h2c', 'h2', 'http1']
const payload = 'x'.repeat(1000)
const nextTurn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

// How many 1 KB events the buffers between a source and a client that reads nothing may hold. HTTP/2: the
// client's flow-control window (64 KiB a stream) and the stream's write buffer. HTTP/1.1: the kernel's socket
// buffers, which Linux grows to a few MiB on loopback (none of it in the server's heap).
const inFlightBound: Record<string, number> = { h2c: 2000, h2: 2000, http1: 8000 }

for (const protocol of PROTOCOLS_UNDER_TEST) {
  test(`${protocol}: a client that never reads stops the source, memory stays flat, and nothing is lost`, async (t) => {
    let pulled = 0
    const handle = signalled<EventStream>()
    const server = await startServer(t, protocol, (app) => {
      app.get('/endless', (request, reply) => {
        handle.resolve(reply.sse(function * () {
          for (let i = 0; ; i++) {
            pulled++
            yield { id: String(i), data: payload }
          }
        }))
      })
      app.get('/clock', (request, reply) => { reply.sse() })
    }, { plugin: { heartbeatInterval: 40 } })
    const clock = await openStream(t, server, '/clock')
    const stuck = await openStream(t, server, '/endless')
    stuck.pause()
    const stream = await within(handle.promise, 'the stream')
    // Time measured in heartbeats of another stream: the count must settle, or this times out.
    const settled = await waitUntilSteady(clock, () => pulled, 3, 'the number of events pulled')
    t.ok(settled < inFlightBound[protocol],
      `${settled} events pulled, fewer than ${inFlightBound[protocol]}: what the buffers on the way hold`)
    t.ok(stream.bufferedBytes > 0, `the stream waits for the client with ${stream.bufferedBytes} bytes written`)
    const before = await memoryInUse()
    await clock.waitForComments(clock.comments.length + 20)
    t.equal(pulled, settled, 'twenty heartbeat intervals later, not one more event was pulled')
    const growth = await memoryInUse() - before
    t.ok(growth < 2 * 1024 * 1024, `server memory did not grow with time (${Math.round(growth / 1024)} KiB)`)
    stuck.resume()
    await stuck.waitForEvents(settled + 500)
    t.ok(stuck.events.every((event, i) => event.id === String(i) && event.data === payload),
      `${stuck.events.length} events, in order, with no gap`)
  })

  test(`${protocol}: push: send() says false once the client is behind, drained() resolves when it catches up`,
    async (t) => {
      const handle = signalled<EventStream>()
      const server = await startServer(t, protocol, (app) => {
        app.get('/', (request, reply) => { handle.resolve(reply.sse()) })
        app.get('/clock', (request, reply) => { reply.sse() })
      }, { plugin: { heartbeatInterval: 40 } })
      const client = await openStream(t, server, '/')
      const stream = await within(handle.promise, 'the handle')
      const clock = await openStream(t, server, '/clock')
      // A client that keeps up: each event is taken before the next is sent, well past any window or buffer.
      let sent = 0
      const answers = new Set<boolean>()
      for (; sent < 200; sent++) {
        answers.add(stream.send({ id: String(sent), data: payload }))
        await client.waitForEvents(sent + 1)
      }
      t.same([...answers], [true], 'send() said true for 200 events the client took as they came')

      client.pause()
      // One event a turn of the loop, as a sender with its own pace would, until send() says the client is behind.
      let behind = false
      while (!behind && sent < 100_000) {
        behind = !stream.send({ id: String(sent++), data: payload })
        await nextTurn()
      }
      t.ok(behind, `send() said false once the client stopped reading (after ${sent - 200} more events)`)
      let drained = false
      const waiting = stream.drained().then(() => { drained = true })
      await clock.waitForComments(clock.comments.length + 5)
      t.equal(drained, false, 'five heartbeat intervals later, drained() still waits for the paused client')
      t.ok(stream.bufferedBytes > 0, `${stream.bufferedBytes} bytes wait for it`)
      client.resume()
      await within(waiting, 'drained() after resume()')
      await client.waitForEvents(sent)
      t.ok(client.events.every((event, i) => event.id === String(i)), `all ${sent} events, in order`)
      t.equal(stream.send({ id: String(sent), data: payload }), true, 'send() says true again')
      await client.waitForEvents(sent + 1)
      t.equal(await within(stream.drained(), 'drained() with nothing waiting'), undefined,
        'drained() resolves at once when nothing waits')
      stream.close()
      t.equal(await within(stream.drained(), 'drained() once closed'), undefined, 'and once the stream is closed')
    })

  test(`${protocol}: a push stream that goes over maxBufferedBytes is closed with a warning; others go on`,
    async (t) => {
      const handles: EventStream[] = []
      const reqIds: string[] = []
      const opened = signalled()
      const server = await startServer(t, protocol, (app) => {
        app.get('/', (request, reply) => {
          handles.push(reply.sse())
          reqIds.push(request.id)
          if (handles.length === 2) opened.resolve()
        })
      }, { plugin: { maxBufferedBytes: 64 * 1024 } })
      // Over HTTP/2 both streams share one connection.
      const session = isHttp2(protocol) ? await connectSession(t, server) : undefined
      const slow = await openStream(t, server, '/', { session })
      slow.pause()
      const fine = await openStream(t, server, '/', { session })
      await within(opened.promise, 'two streams')
      const [slowStream, fineStream] = handles
      const aborted = new Promise((resolve) => slowStream.signal.addEventListener('abort', resolve))
      // A sender that ignores what send() returns, one event a turn of the loop to each stream.
      let sent = 0
      while (!slowStream.closed && sent < 100_000) {
        slowStream.send({ id: String(sent), data: payload })
        fineStream.send({ id: String(sent), data: payload })
        sent++
        await nextTurn()
      }
      await within(aborted, 'the slow stream\'s signal')
      t.match(slowStream.signal.reason, { code: 'FST_SSE_SLOW_CLIENT', message: /over maxBufferedBytes \(65536\)/ },
        `the slow stream was closed after ${sent} events`)
      const warning = await server.logs.waitFor((record) => record.level === WARN, 'the warning')
      t.match(warning, { msg: /fell behind/, maxBufferedBytes: 65536, reqId: reqIds[0] },
        'a warning with the slow request\'s id')
      t.equal(slowStream.send('more'), false, 'send() says false once it is closed')
      slow.resume()
      await slow.waitForEnd()
      t.ok(slow.events.length < sent, `the slow client's stream was cut short (${slow.events.length} of ${sent})`)

      t.equal(fineStream.closed, false, 'the stream that kept up is still open')
      fineStream.send('still fine')
      await fine.waitForEvents(sent + 1)
      t.ok(fine.events.slice(0, sent).every((event, i) => event.id === String(i)), `it got all ${sent} events`)
      t.equal(fine.events[sent].data, 'still fine')
      t.equal(server.logs.atLeast(WARN).length, 1, 'one warning, nothing else')
    })
}
