import { t as root, test } from 'tap'
import { EventEmitter, once } from 'node:events'
import http2 from 'node:http2'
import { startServer, type TestServer } from './helpers/server'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { waitUntil, within } from './helpers/wait'
import { WARN } from './helpers/logs'
import { activeResources, listenerCounts, memoryInUse, Reachable, trackTimers } from './helpers/resources'
import type { EventStream } from '../index'

// 50,000 streams, then 10,000 subscribers: on a loaded 2-core machine this file may take longer than tap's 120 s.
root.setTimeout(300_000)

// The load of issue 8, in CI: 50,000 streams opened and dropped; app.close() with 10,000 subscribers while
// events are being published. What each took is printed as a comment; docs/delivery-guarantees.md keeps the
// figures.

const CHURN = 50_000
// Streams opened at once, over sessions used for PER_SESSION streams each: Node answers a connection that
// resets many streams fast with GOAWAY (its "rapid reset" defence), as it should.
const WAVE = 500
const PER_SESSION = 50

/**
 * Opens `count` streams of `path` over new sessions, `PER_SESSION` each, and resolves once each has its first
 * bytes. A bare node:http2 client that keeps nothing: the memory measured is the server's, not the test's.
 */
async function openWave (server: TestServer, path: string, count: number): Promise<http2.ClientHttp2Session[]> {
  const sessions = Array.from({ length: Math.ceil(count / PER_SESSION) }, () => {
    const session = http2.connect(server.origin)
    session.on('error', () => {})
    return session
  })
  await Promise.all(Array.from({ length: count }, async (_, i) => {
    const request = sessions[Math.floor(i / PER_SESSION)].request({ ':path': path })
    request.on('error', () => {})
    await within(once(request, 'data'), 'the first event of a stream')
  }))
  return sessions
}

/** Resets every stream of the sessions (RST_STREAM), then closes them. */
async function dropWave (sessions: http2.ClientHttp2Session[]): Promise<void> {
  await Promise.all(sessions.map(async (session) => {
    session.destroy(undefined, http2.constants.NGHTTP2_CANCEL)
    if (!session.closed) await once(session, 'close')
  }))
}

test(`h2c: ${CHURN.toLocaleString('en-US')} streams opened and dropped: memory, handles, timers and listeners come back`,
  async (t) => {
    const timers = trackTimers(t)
    const sample = new Reachable<EventStream>()
    const finallies = new EventEmitter()
    let opened = 0
    let ended = 0
    const server = await startServer(t, 'h2c', (app) => {
      app.get('/stream', (request, reply) => {
        const stream = reply.sse(async function * ({ signal }) {
          try {
            yield 'open'
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))
          } finally {
            ended++
            finallies.emit('finally')
          }
        })
        // One stream in a hundred is followed to the end: enough to see a leak, cheap enough for 50,000.
        if (opened++ % 100 === 0) sample.add(stream)
      })
      // Off here: Node keeps a closed session's idle timer (Fastify's http2SessionTimeout, 72 s) until it fires,
      // one per session of the thousand this test makes. Not the plugin's, and gone after 72 s; with it on,
      // this test counts 1,000 timers more.
    }, { logLevel: 'warn', fastify: { http2SessionTimeout: 0 } })
    const allEnded = async (n: number): Promise<unknown> =>
      await waitUntil(finallies, 'finally', () => (ended >= n ? true : undefined), `${n} sources to end`, 60_000)
    let serverSessions = 0
    const sessionsGone = new EventEmitter()
    server.app.server.on('session', (session: http2.ServerHttp2Session) => {
      serverSessions++
      session.once('close', () => {
        serverSessions--
        sessionsGone.emit('close')
      })
    })
    const allSessionsClosed = async (): Promise<unknown> => await waitUntil(sessionsGone, 'close',
      () => (serverSessions === 0 ? true : undefined), 'the server\'s sessions to close', 30_000)

    // A first wave, so that what is made once (caches, pools, compiled code) is in the baseline.
    await dropWave(await openWave(server, '/stream', WAVE))
    await allEnded(WAVE)
    await allSessionsClosed()
    const baseline = {
      memory: await memoryInUse(),
      resources: activeResources(),
      timers: await timers(),
      server: listenerCounts(server.app.server)
    }

    const started = Date.now()
    for (let done = 0; done < CHURN; done += WAVE) await dropWave(await openWave(server, '/stream', WAVE))
    await allEnded(CHURN + WAVE)
    await allSessionsClosed()
    const seconds = (Date.now() - started) / 1000
    t.comment(`${CHURN} streams opened, read and dropped in ${seconds.toFixed(1)} s (${Math.round(CHURN / seconds)} a second)`)

    t.equal(ended, CHURN + WAVE, 'every source\'s finally ran')
    t.equal(await sample.count(), 0, `not one of ${sample.tracked} streams followed is still reachable`)
    const growth = await memoryInUse() - baseline.memory
    t.comment(`memory after GC: ${Math.round(growth / 1024)} KiB more than before the ${CHURN} streams`)
    // 160 bytes kept per stream would be 8 MiB: a leak of anything a stream holds would show far above it.
    t.ok(growth < 8 * 1024 * 1024, `memory came back (${Math.round(growth / 1024)} KiB above the baseline)`)
    t.same(activeResources(), baseline.resources, 'the same handles are open as before')
    t.equal(await timers(), baseline.timers, 'the same timers are alive as before')
    t.same(listenerCounts(server.app.server), baseline.server, 'the server has the same listeners as before')
    t.same(server.logs.atLeast(WARN), [], 'nothing logged above info')
  })

test('h2c: app.close() with 10,000 subscribers and a publish loop running ends them all, losing nothing', async (t) => {
  const COUNT = 10_000
  const handles: EventStream[] = []
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/news', (request, reply) => { handles.push(reply.sse(app.sse.channel('news'))) })
  }, { logLevel: 'warn' })
  const channel = server.app.sse.channel('news')
  const clients: SseClient[] = []
  for (let wave = 0; wave < COUNT / WAVE; wave++) {
    const sessions = await Promise.all(Array.from({ length: WAVE / 250 }, async () => await connectSession(t, server)))
    clients.push(...await Promise.all(Array.from({ length: WAVE }, async (_, i) =>
      await openStream(t, server, '/news', { session: sessions[i % sessions.length] }))))
  }
  t.equal(channel.subscribers, COUNT)

  // Publishing as fast as the API allows, a turn of the loop at a time, until the channel refuses.
  const published: string[] = []
  let refusal: unknown
  const publishing = (async () => {
    for (let n = 0; refusal === undefined; n++) {
      await channel.publish(String(n)).then((id) => published.push(id), (error: unknown) => { refusal = error })
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()
  await Promise.all(clients.map(async (client) => await client.waitForEvents(3)))

  const started = Date.now()
  await within(server.app.close(), 'app.close()', 10_000)
  t.comment(`app.close() with ${COUNT} subscribers and a publish loop running took ${Date.now() - started} ms`)
  await within(publishing, 'the publish loop to stop')
  t.match(refusal, { code: 'FST_SSE_CHANNEL_CLOSED' }, 'publishing after the close is refused with a code')
  t.ok(handles.every((stream) => stream.closed && (stream.signal.reason as { code: string }).code === 'FST_SSE_SERVER_CLOSING'),
    'every subscriber was ended for the server closing')
  await Promise.all(clients.map(async (client) => await client.waitForEnd()))
  // What a client got is where it resumes from: all it got must be the events published, in order, none skipped.
  const intact = clients.every((client) => client.events.every((event, i) => event.data === String(i)))
  t.ok(intact, `each of ${COUNT} clients got a gapless, ordered run of the ${published.length} events published`)
  const received = clients.map((client) => client.events.length)
  t.comment(`events received per client: ${Math.min(...received)} to ${Math.max(...received)} of ${published.length}`)
  t.same(server.logs.atLeast(WARN), [], 'nothing logged above info')
})
