import { test } from 'tap'
import fc from 'fast-check'
import http2 from 'node:http2'
import https from 'node:https'
import { EventEmitter, once } from 'node:events'
import type { Http2Session } from 'node:http2'
import { Heartbeat } from '../lib/stream/heartbeat'
import { StreamsBySession } from '../lib/stream/streams-by-session'
import type { StreamTransport } from '../lib/stream/transport'
import { startServer } from './helpers/server'
import { waitUntil } from './helpers/wait'

// A heartbeat round over many streams looks at them a slice at a time, letting the event loop run in between: at
// 100,000 streams a round in one go would hold the loop for most of a second. It looks at them session by session
// (what is written to an HTTP/2 session's streams during a slice goes out in one write of the session's).
const SLICE = 250

const nextTurn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

interface FakeStreams {
  streams: StreamsBySession<StreamTransport>
  all: StreamTransport[]
  // The session of each stream, by its index: -1 for HTTP/1.1.
  sessionOf: number[]
  // The key of each stream's session, by its index.
  keyOf: Array<Http2Session | undefined>
  visits: number[]
  times: number[]
  ticks: number[]
}

/**
 * Streams that only note when the heartbeat looks at them, the time it gave, and the ticks the look stands for:
 * `sessions[i]` of them on HTTP/2 session i, then `http1` over HTTP/1.1, opened a session after another in turn (as
 * clients open them).
 */
function fakeStreams (sessions: number[], http1 = 0): FakeStreams {
  const fake: FakeStreams = { streams: new StreamsBySession(), all: [], sessionOf: [], keyOf: [], visits: [], times: [], ticks: [] }
  const keys = sessions.map(() => ({}) as Http2Session)
  const left = [...sessions, http1]
  while (left.some((count) => count > 0)) {
    for (let s = 0; s < left.length; s++) {
      if (left[s] === 0) continue
      left[s]--
      const index = fake.all.length
      const stream = {
        tick: (now: number, elapsed: number) => {
          fake.visits.push(index)
          fake.times.push(now)
          fake.ticks.push(elapsed)
        }
      } as unknown as StreamTransport
      fake.all.push(stream)
      fake.sessionOf.push(s < sessions.length ? s : -1)
      fake.keyOf.push(keys[s])
      fake.streams.add(stream, keys[s])
    }
  }
  return fake
}

test('a round looks at each stream once, a slice in a turn of the event loop, a session\'s streams one after another, the streams that left meanwhile not at all', async (t) => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.nat({ max: 3 * SLICE }), { maxLength: 8 }),
    fc.nat({ max: 3 * SLICE + 10 }),
    fc.array(fc.nat(), { maxLength: 20 }),
    fc.nat({ max: 5 }),
    async (sessions, http1, leaving, tickAgainAfter) => {
      const { streams, all, sessionOf, keyOf, visits, times } = fakeStreams(sessions, http1)
      const count = all.length
      const heartbeat = new Heartbeat(1000, 0, streams)
      heartbeat.tick()
      const turns = [visits.length]
      let gone = new Set<number>()
      while (turns.length < 100 && visits.length + gone.size < count) {
        // Streams leave between slices; a tick due meanwhile (a busy loop) starts no second round.
        for (const index of leaving) {
          if (count > 0 && !visits.includes(index % count)) {
            streams.delete(all[index % count], keyOf[index % count])
            gone = new Set([...gone, index % count])
          }
        }
        if (turns.length === tickAgainAfter) heartbeat.tick()
        await nextTurn()
        turns.push(visits.length)
      }
      await nextTurn()
      heartbeat.stop()
      if (new Set(visits).size !== visits.length) throw new Error('a stream was looked at twice in one round')
      const expected = [...Array(count).keys()].filter((index) => !gone.has(index))
      if (visits.length !== expected.length || expected.some((index) => !visits.includes(index))) {
        throw new Error(`looked at ${visits.length} of ${expected.length} streams`)
      }
      const slices = turns.map((seen, i) => seen - (i === 0 ? 0 : turns[i - 1])).filter((size) => size > 0)
      if (slices.some((size, i) => size > SLICE || (size < SLICE && i < slices.length - 1))) {
        throw new Error(`slices of ${slices.join(', ')}`)
      }
      // Once it leaves a session's streams, it does not come back to them.
      const order = visits.map((index) => sessionOf[index]).filter((session, v, all) => v === 0 || session !== all[v - 1])
      if (new Set(order).size !== order.length) throw new Error(`sessions looked at in the order ${order.join(', ')}`)
      // The time it gives is a small whole number (ms since the process loaded it), the same for the whole round.
      if (times.some((now) => now !== times[0] || !Number.isSafeInteger(now) || now < 1 || now >= 2 ** 31)) {
        throw new Error(`times ${times[0]}`)
      }
    }
  ), { numRuns: 60 })
  t.pass('every round looked at the streams that stayed, once each, a slice at a time, session by session')
})

test('a heartbeat stopped in the middle of a round looks at no more streams', async (t) => {
  const { streams, visits } = fakeStreams([], 3 * SLICE)
  const heartbeat = new Heartbeat(1000, 0, streams)
  heartbeat.tick()
  t.equal(visits.length, SLICE, 'the first slice at once')
  heartbeat.stop()
  await nextTurn()
  await nextTurn()
  t.equal(visits.length, SLICE, 'nothing after the stop')
  heartbeat.tick()
  t.equal(visits.length, 2 * SLICE, 'a new round starts from the first stream again')
  heartbeat.stop()
})

test('ticks that come while a round is under way (a busy loop) count for the next: no stream is quiet for longer unseen', async (t) => {
  const { streams, visits, ticks } = fakeStreams([], 3 * SLICE)
  const heartbeat = new Heartbeat(1000, 0, streams)
  heartbeat.tick()
  heartbeat.tick()
  heartbeat.tick()
  t.equal(visits.length, SLICE, 'one round under way')
  await nextTurn()
  await nextTurn()
  await nextTurn()
  t.equal(visits.length, 3 * SLICE, 'the round is over')
  t.ok(ticks.every((count) => count === 1), 'it stood for one tick')
  heartbeat.tick()
  t.same(new Set(ticks.slice(3 * SLICE)), new Set([3]), 'the next stands for its own and the two that came meanwhile')
  heartbeat.stop()
})

test('h2c: each of 1,200 streams gets heartbeats, the rounds cut in slices', async (t) => {
  const server = await startServer(t, 'h2c', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 200 } })
  const session = http2.connect(server.origin)
  t.teardown(() => session.destroy())
  await once(session, 'remoteSettings')
  const comments = new Array<number>(1200).fill(0)
  const arrived = new EventEmitter()
  for (let i = 0; i < comments.length; i++) {
    const stream = session.request({ ':path': '/', accept: 'text/event-stream' })
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      comments[i] += chunk.split(':\n\n').length - 1
      arrived.emit('comment')
    })
  }
  // Two: a stream may get its first bytes with its headers.
  await waitUntil(arrived, 'comment', () => comments.every((count) => count >= 2) ? true : undefined,
    'two heartbeats on every stream', 20_000)
  t.pass('every stream got heartbeats')
})

test('h2 with HTTP/1.1 beside it: streams opened in turn over two sessions, and over HTTP/1.1, each get heartbeats, while a session goes and another comes', async (t) => {
  const server = await startServer(t, 'h2', (app) => {
    app.get('/', (request, reply) => { reply.sse() })
  }, { plugin: { heartbeatInterval: 200 } })
  const arrived = new EventEmitter()
  const connect = async (): Promise<http2.ClientHttp2Session> => {
    const session = http2.connect(server.origin, { ca: server.ca })
    session.on('error', () => {})
    t.teardown(() => session.destroy())
    await once(session, 'remoteSettings')
    return session
  }
  const counted = (count: (chunk: string) => void) => (chunk: string): void => {
    count(chunk)
    arrived.emit('comment')
  }
  const comments = (chunk: string): number => chunk.split(':\n\n').length - 1
  const [kept, gone] = await Promise.all([connect(), connect()])
  // Opened in turn, a stream on one session then one on the other, as clients open them: the order the heartbeat
  // would meet them in, were they not kept by session.
  const onKept = new Array<number>(600).fill(0)
  let goneFirst = false
  for (let i = 0; i < onKept.length; i++) {
    kept.request({ ':path': '/', accept: 'text/event-stream' }).setEncoding('utf8')
      .on('data', counted((chunk) => { onKept[i] += comments(chunk) }))
    gone.request({ ':path': '/', accept: 'text/event-stream' }).setEncoding('utf8').on('error', () => {})
      .on('data', counted(() => {
        // Its first heartbeat: the rounds are under way; the session goes at once, its streams with it.
        if (goneFirst) return
        goneFirst = true
        gone.destroy()
      }))
  }
  const overHttp1 = new Array<number>(20).fill(0)
  for (let i = 0; i < overHttp1.length; i++) {
    const request = https.get(`${server.origin}/`, { ca: server.ca, agent: false, headers: { accept: 'text/event-stream' } }, (response) => {
      response.setEncoding('utf8')
      response.on('data', counted((chunk: string) => { overHttp1[i] += comments(chunk) }))
    })
    request.on('error', () => {})
    t.teardown(() => request.destroy())
  }
  await waitUntil(arrived, 'comment', () => goneFirst ? true : undefined, 'a heartbeat on the session that goes', 10_000)
  // A session that comes once the other went.
  const late = await connect()
  const onLate = new Array<number>(300).fill(0)
  for (let i = 0; i < onLate.length; i++) {
    late.request({ ':path': '/', accept: 'text/event-stream' }).setEncoding('utf8')
      .on('data', counted((chunk) => { onLate[i] += comments(chunk) }))
  }
  // Two: a stream may get its first bytes with its headers.
  await waitUntil(arrived, 'comment', () => [onKept, onLate, overHttp1].every((counts) => counts.every((count) => count >= 2)) ? true : undefined,
    'two heartbeats on every stream of the sessions that stay, and over HTTP/1.1', 20_000)
  t.pass('every stream that stayed got heartbeats')
})
