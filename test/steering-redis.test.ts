import { t as root, test, type Test } from 'tap'
import type { ClientHttp2Session } from 'node:http2'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { eventually, startRedis } from './helpers/redis'
import { startCluster } from './helpers/redis-cluster'
import { startInstance, type InstanceProcess } from './helpers/redis-instances'
import { missingService, mustSkip } from './helpers/services'
import { waitUntil } from './helpers/wait'
import { MISSED_EVENT } from '../index'

// Instance processes to start, and a cluster: on a loaded 2-core machine this file may take longer than tap's 120 s.
root.setTimeout(600_000)

// Several instances are several processes, each with its own connections to one real redis-server (or to the local
// Redis Cluster): tagged() called on one acts on the streams of all, and counts and presence sum them.

const skip = mustSkip(missingService('redis-server'))
const clusterSkip = mustSkip(missingService('redis-server') ?? missingService('redis-cli', 'apt-get install redis-server (it has redis-cli)'))

interface Result {
  streams: number
  unanswered: string[]
}

/** A stream of each kind on an instance, tagged `user:<user>`: pushed, one channel, several channels. */
const KINDS = [['push', ''], ['channel', 'prices'], ['list', 'prices,news']] as const

function steeredPath (kind: string, channels: string, tags: string): string {
  return `/steered?kind=${kind}&channels=${channels}&tags=${tags}`
}

async function openKinds (t: Test, instances: InstanceProcess[], user: string): Promise<SseClient[]> {
  const clients: SseClient[] = []
  for (const instance of instances) {
    for (const [kind, channels] of KINDS) clients.push(await openStream(t, instance.server, steeredPath(kind, channels, `user:${user},all`)))
  }
  return clients
}

function datas (client: SseClient): string[] {
  return client.events.filter((event) => event.event !== MISSED_EVENT).map((event) => event.data)
}

async function untilData (client: SseClient, data: string): Promise<void> {
  await waitUntil(client, 'change', () => datas(client).includes(data) ? true : undefined, `"${data}" on the stream`)
}

async function steerEverywhere (t: Test, instances: InstanceProcess[]): Promise<void> {
  const [a, b, c] = instances
  const ann = await openKinds(t, instances, 'ann')
  const bob = await openKinds(t, instances, 'bob')
  const count = await a.steer<number>('count', 'user:ann')
  t.equal(count.result, ann.length, `A counts ann's ${ann.length} streams, on every instance`)
  t.equal((await (c ?? b).steer<number>('count', 'all')).result, ann.length + bob.length)

  // Subscribed from A; published on the last instance right after it resolved: every one of ann's streams gets it, once.
  const subscribed = await a.steer<Result>('subscribe', 'user:ann', 'room:7')
  t.same(subscribed.result, { streams: ann.length, unanswered: [] }, `subscribed on every instance (${subscribed.ms.toFixed(1)} ms)`)
  const last = instances[instances.length - 1]
  await last.publish('room:7', ['first'])
  await Promise.all(ann.map(async (client) => await untilData(client, 'first')))
  t.ok(ann.every((client) => datas(client).filter((data) => data === 'first').length === 1), 'once each')
  // Each instance reports its counts every second: the room's presence, summed over them, within about a second.
  await eventually(async () => (await b.presence('room:7')).result.subscribers === ann.length, 'the room\'s presence, summed')
  await eventually(async () => (await b.presence('prices')).result.subscribers === 4 * instances.length, 'prices: two of each user, on each')

  // The streams of one channel now have cursors: each comes back on the next instance, to a route that carries the
  // room too, and resumes both channels exactly.
  const single = ann.filter((_, i) => KINDS[i % KINDS.length][0] === 'channel')
  const cursors = single.map((client) => client.events.at(-1)?.id as string)
  t.ok(cursors.every((cursor) => cursor.startsWith('~')), 'their ids became cursors')
  for (const client of single) client.close()
  await a.publish('room:7', ['room while away'])
  await a.publish('prices', ['prices while away'])
  const back = await Promise.all(single.map(async (_, i) => await openStream(t, instances[(i + 1) % instances.length].server,
    steeredPath('list', 'prices,room:7', 'user:ann,all'), { headers: { 'last-event-id': cursors[i] } })))
  await Promise.all(back.map(async (client) => await untilData(client, 'room while away')))
  await Promise.all(back.map(async (client) => await untilData(client, 'prices while away')))
  t.ok(back.every((client) => datas(client).sort().join() === 'prices while away,room while away'),
    'each resumed exactly what it missed, once, on another instance')
  const now = [...ann.filter((client) => !single.includes(client)), ...back]

  // Unsubscribed from B: what is published after it resolved reaches none of them.
  const unsubscribed = await b.steer<Result>('unsubscribe', 'user:ann', 'room:7')
  t.same(unsubscribed.result, { streams: now.length, unanswered: [] }, `unsubscribed (${unsubscribed.ms.toFixed(1)} ms)`)
  await a.publish('room:7', ['after'])
  // Then a channel every one of them gets: published after 'after', on the same Redis, it comes after it.
  await a.steer<Result>('subscribe', 'user:ann', 'marker')
  await a.publish('marker', ['marker'])
  await Promise.all(now.map(async (client) => await untilData(client, 'marker')))
  t.ok(now.every((client) => !datas(client).includes('after')), 'the room no more')
  await eventually(async () => (await a.presence('room:7')).result.subscribers === 0, 'the room\'s presence: none')

  // Closed from the last instance: each of ann's streams gets a retry: (shutdownRetry), then ends; bob's stay open.
  const closed = await last.steer<Result>('close', 'user:ann')
  t.same(closed.result, { streams: now.length, unanswered: [] }, `closed (${closed.ms.toFixed(1)} ms)`)
  await Promise.all(now.map(async (client) => await client.waitForEnd()))
  t.ok(now.every((client) => client.retries.at(-1) as number >= 20 && (client.retries.at(-1) as number) <= 40), 'each told when to come back')
  t.ok(bob.every((client) => !client.ended), 'bob\'s streams are open')
  t.equal((await a.steer<number>('count', 'user:ann')).result, 0)
  t.equal((await b.steer<number>('count', 'user:bob')).result, bob.length)
}

test('three instances over one Redis: tagged() on one closes, subscribes, unsubscribes and counts the streams of all', { skip }, async (t) => {
  const redis = await startRedis(t)
  const instances = await Promise.all([0, 1, 2].map(async () => await startInstance(t, {
    protocol: 'h2c', redis: redis.url, plugin: { shutdownRetry: { min: 20, max: 40 } }
  })))
  await steerEverywhere(t, instances)
})

test('two instances over the local Redis Cluster: the same', { skip: clusterSkip }, async (t) => {
  const cluster = await startCluster(t)
  const instances = await Promise.all([0, 1].map(async () => await startInstance(t, {
    protocol: 'h2c', cluster: cluster.startupNodes, plugin: { shutdownRetry: { min: 20, max: 40 } }
  })))
  await steerEverywhere(t, instances)
})

test('counts and presence are exact after churn of thousands of streams, and once an instance is SIGKILLed', { skip }, async (t) => {
  const redis = await startRedis(t)
  const instances = await Promise.all([0, 1, 2].map(async () => await startInstance(t, { protocol: 'h2c', redis: redis.url })))
  const [a, b, c] = instances
  const TAGS = 7
  // Streams open, by instance: each with the tag `t:<n % TAGS>` and 'all', subscribed to the channel 'churn'.
  const open = new Map<InstanceProcess, Array<{ client: SseClient, tag: number }>>(instances.map((instance) => [instance, []]))
  const sessions = new Map<InstanceProcess, ClientHttp2Session[]>()
  for (const instance of instances) {
    sessions.set(instance, await Promise.all(Array.from({ length: 8 }, async () => await connectSession(t, instance.server))))
  }
  let opened = 0
  const openSome = async (count: number): Promise<void> => {
    await Promise.all(Array.from({ length: count }, async () => {
      const n = opened++
      const instance = instances[n % 3]
      const tag = n % TAGS
      const session = (sessions.get(instance) as ClientHttp2Session[])[n % 8]
      const client = await openStream(t, instance.server, steeredPath('channel', 'churn', `t:${tag},all`), { session, timeoutMs: 30_000 })
      open.get(instance)?.push({ client, tag })
    }))
  }
  // Closes `tenths` of every ten streams of each instance, spread (3 of 10: the 0th, 3rd and 6th).
  const closeSome = (tenths: number): void => {
    for (const streams of open.values()) {
      for (let i = streams.length - 1; i >= 0; i--) {
        if ((i * 3) % 10 >= tenths) continue
        streams[i].client.close()
        streams.splice(i, 1)
      }
    }
  }
  const expected = (tag?: number): number => [...open.values()].flat().filter((stream) => tag === undefined || stream.tag === tag).length

  await openSome(1500)
  closeSome(4)
  await openSome(600)
  closeSome(3)
  t.ok(expected() > 1000, `${expected()} streams open after ${opened} opened`)
  // Closes are on their way to the instances: once they are there, every count is exact, and stays so.
  await eventually(async () => (await a.steer<number>('count', 'all')).result === expected(), 'the count to reach the streams open', 20_000)
  for (let tag = 0; tag < TAGS; tag++) t.equal((await b.steer<number>('count', `t:${tag}`)).result, expected(tag), `tag t:${tag}`)
  await eventually(async () => (await c.presence('churn')).result.subscribers === expected(), 'presence: the streams open')

  // C dies without a word. Counts ask every instance: its streams are counted no more, from the first count after it
  // died, and it is named as not answering until its lease lapses. Presence sums what each instance last reported:
  // its streams drop out once its report lapses.
  await c.kill()
  open.delete(c)
  const killedAt = Date.now()
  const first = await a.steer<number>('count', 'all')
  t.equal(first.result, expected(), 'counted without the dead instance\'s streams from the first count after it died')
  const named = await a.steer<Result>('unsubscribe', 'all', 'nothing')
  t.ok(named.result.unanswered.length <= 1, `named while its lease held (${named.result.unanswered.join() || 'lapsed already'})`)
  await eventually(async () => (await a.steer<Result>('unsubscribe', 'all', 'nothing')).result.unanswered.length === 0,
    'the dead instance\'s lease to lapse', 10_000)
  t.comment(`no longer waited for ${Date.now() - killedAt} ms after it died`)
  await eventually(async () => (await a.presence('churn')).result.subscribers === expected(), 'presence without the dead instance', 10_000)
  t.comment(`presence without the dead instance ${Date.now() - killedAt} ms after it died`)
  const after = await b.presence('churn')
  t.same(after.result, { subscribers: expected() }, 'exact')
  t.ok(after.ms < 1000, `answered in ${after.ms.toFixed(1)} ms`)
  t.equal((await b.steer<number>('count', 'all')).result, expected())
})
