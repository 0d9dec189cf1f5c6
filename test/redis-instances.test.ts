import { t as root, test } from 'tap'
import { EventEmitter } from 'node:events'
import { EventSource, type FetchLike } from 'eventsource'
import { openStream, type SseClient } from './helpers/client'
import { startRedis } from './helpers/redis'
import { startInstance } from './helpers/redis-instances'
import { missingService, mustSkip } from './helpers/services'
import { waitUntil } from './helpers/wait'
import { MISSED_EVENT } from '../index'

// Instance processes to start, a few times: on a loaded 2-core machine this file may take longer than tap's 120 s.
root.setTimeout(300_000)

// Several instances are several processes, each with its own connections to one real redis-server, and nothing is
// published to warm them up: what a client is owed is what was published after its stream opened, or after its id.

const skip = mustSkip(missingService('redis-server'))

// What a client had when it went away: what arrived after (already on its way) is not what it resumes from.
const kept = new WeakMap<SseClient, number>()

function leave (client: SseClient): void {
  kept.set(client, client.events.length)
  client.close()
}

function received (client: SseClient): SseClient['events'] {
  return client.events.slice(0, kept.get(client) ?? client.events.length)
}

function numbers (clients: SseClient[]): number[] {
  return clients.flatMap((client) => received(client).filter((event) => event.event !== MISSED_EVENT).map((event) => Number(event.data)))
}

function lastId (clients: SseClient[]): string | undefined {
  return clients.flatMap(received).findLast((event) => event.id !== undefined)?.id
}

test('several instances over one Redis', { skip }, async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([0, 1].map(async () => await startInstance(t, { protocol: 'h2c', redis: redis.url })))

  await t.test('resumes on the other instance while events are published: every event once, in order, no gap', async (t) => {
    const CLIENTS = 30
    const EVENTS = 600
    const connections: SseClient[][] = await Promise.all(Array.from({ length: CLIENTS }, async () => [await openStream(t, a.server, '/channels/race')]))
    // Published by a third of the way through by A, at 300 a second, while the clients hop between instances.
    const publishing = a.steady('race', EVENTS, 300, '')
    let hops = 0
    const state = { done: false }
    publishing.finally(() => { state.done = true }).catch(() => {})
    await Promise.all(connections.map(async (connection, i) => {
      for (let hop = 0; hop < 4 && !state.done; hop++) {
        const current = connection[connection.length - 1]
        await current.waitForEvents(1 + ((i * 7 + hop * 13) % 40)).catch(() => {})
        if (state.done) break
        leave(current)
        const id = lastId(connection)
        const next = hop % 2 === 0 ? b : a
        connection.push(await openStream(t, next.server, '/channels/race', { headers: id === undefined ? {} : { 'last-event-id': id } }))
        hops++
      }
    }))
    const { ids, failures } = await publishing
    t.same(failures, [], 'every publish was taken')
    const last = ids[EVENTS - 1] as string
    await Promise.all(connections.map(async (connection) => {
      const current = connection[connection.length - 1]
      await waitUntil(current, 'change', () => current.events.some((event) => event.id === last) ? true : undefined, 'the last event')
    }))
    const expected = Array.from({ length: EVENTS }, (_, n) => n)
    const wrong = connections.map(numbers).filter((got) => got.join() !== expected.join())
    for (const got of wrong.slice(0, 3)) {
      const problems = got.map((n, i) => n === got[i - 1] + 1 || i === 0 ? '' : `${got[i - 1]}->${n}`).filter(Boolean)
      t.comment(`first ${got[0]}, length ${got.length}, breaks: ${problems.join(' ')}`)
    }
    t.equal(wrong.length, 0, `each of ${CLIENTS} clients got all ${EVENTS} events once, in order, across ${hops} resumes`)
    t.ok(hops > CLIENTS, 'clients resumed while events were published')
    t.equal(connections.flatMap((connection) => connection).filter((client) => client.events[0]?.event === MISSED_EVENT).length, 0,
      'no resume was told it missed events')
  })

  await t.test('a just-started instance answers a stream once it can deliver to it: nothing published after is lost', async (t) => {
    for (let i = 0; i < 3; i++) {
      const fresh = await startInstance(t, { protocol: 'h2c', redis: redis.url })
      // Its first request, on a channel nobody followed yet; then, once the client saw its stream open, a publish elsewhere.
      const client = await openStream(t, fresh.server, `/channels/fresh-${i}`)
      t.equal(client.status, 200)
      const [id] = await a.publish(`fresh-${i}`, ['right after the stream opened'])
      await client.waitForEvents(1)
      t.same(client.events.map((event) => event.id), [id], `instance ${i + 1}: the event published right after it opened`)
      const second = await openStream(t, fresh.server, `/channels/fresh-${i}`)
      const [next] = await b.publish(`fresh-${i}`, ['next'])
      await second.waitForEvents(1)
      t.same(second.events.map((event) => event.id), [next], 'a second subscriber starts after what the first had')
      await fresh.close()
    }
  })
})

test('the eventsource package reconnecting across two HTTP/1.1 instances gets every event once, in order', { skip }, async (t) => {
  const redis = await startRedis(t)
  const instances = await Promise.all([0, 1].map(async () => await startInstance(t, { protocol: 'http1', redis: redis.url, retry: 20 })))
  const SOURCES = 4
  const EVENTS = 300
  const received: number[][] = []
  const arrived = new EventEmitter()
  const connectionsMade: string[][] = []
  const sources = Array.from({ length: SOURCES }, (_, k) => {
    received.push([])
    connectionsMade.push([])
    let attempt = k
    // Each reconnect (every 150 ms, when the instance ends the stream) goes to the other instance, with Last-Event-ID.
    const hop: FetchLike = async (url, init) => {
      const instance = instances[attempt++ % 2]
      connectionsMade[k].push((init.headers as Record<string, string>)['Last-Event-ID'] ?? '')
      return await fetch(`${instance.origin}${new URL(url).pathname}?closeAfter=150`, init)
    }
    const source = new EventSource(`${instances[0].origin}/channels/hops`, { fetch: hop })
    t.teardown(() => source.close())
    source.addEventListener('message', (event) => {
      received[k].push(Number(event.data))
      arrived.emit('change')
    })
    return source
  })
  await waitUntil(arrived, 'change', () => connectionsMade.every((made) => made.length > 0) ? true : undefined, 'every source to connect')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const { failures } = await instances[0].steady('hops', EVENTS, 200, '')
  t.same(failures, [])
  await waitUntil(arrived, 'change', () => received.every((got) => got.includes(EVENTS - 1)) ? true : undefined, 'the last event everywhere')
  for (const source of sources) source.close()
  const expected = Array.from({ length: EVENTS }, (_, n) => n).join()
  t.ok(received.every((got) => got.join() === expected), 'all of them, once, in order, on every source')
  t.ok(connectionsMade.every((made) => made.length >= 8 && made.slice(1).every((id) => id !== '')),
    'each source reconnected many times, each time with Last-Event-ID, to one instance then the other')
})
