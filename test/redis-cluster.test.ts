import { t as root, test } from 'tap'
import { openStream, type SseClient } from './helpers/client'
import { Cluster } from 'ioredis'
import { startCluster, type RedisCluster } from './helpers/redis-cluster'
import { eventually } from './helpers/redis'
import { startInstance } from './helpers/redis-instances'
import { missingService, mustSkip } from './helpers/services'
import { waitUntil } from './helpers/wait'
import { RedisKeys, shardTags, slotOf } from '../lib/stores/redis/keys'
import { MISSED_EVENT } from '../index'
import { RedisStore } from '../redis'

// A cluster and two instance processes to start: on a loaded 2-core machine this file may take longer than tap's 120 s.
root.setTimeout(300_000)

// A real Redis Cluster of three primaries, started by the test, and two instances in processes of their own, each
// with its own ioredis Cluster client: channels whose shards live on different nodes deliver and resume across them.

const skip = mustSkip(missingService('redis-server') ?? missingService('redis-cli', 'apt-get install redis-server (it has redis-cli)'))

const keys = new RedisKeys('sse:', 16)

/** Channels named `${prefix}0`, `${prefix}1`, ... until there is one on each of the `ports`' nodes. */
async function channelsOnEveryNode (ownerOf: (slot: number) => Promise<number>, ports: number[], prefix: string): Promise<string[]> {
  const found = new Map<number, string>()
  for (let n = 0; found.size < ports.length; n++) {
    const channel = `${prefix}${n}`
    const owner = await ownerOf(slotOf(shardTags(16)[keys.shardOf(channel)]))
    if (!found.has(owner)) found.set(owner, channel)
  }
  return [...found.values()]
}

/** The channels a node has sharded subscribers for. */
async function subscribers (cluster: RedisCluster, port: number): Promise<string[]> {
  return await cluster.ask(port, ['PUBSUB', 'SHARDCHANNELS']) as string[]
}

function data (client: SseClient): string[] {
  return client.events.filter((event) => event.event !== MISSED_EVENT).map((event) => event.data)
}

test('an ioredis Cluster store over a real Redis Cluster of three primaries', { skip }, async (t) => {
  const cluster = await startCluster(t)
  // No live check to fall back on (an hour apart): what arrives comes by sharded pub/sub, or by the read on from the
  // stream once a subscription moved to the node that serves its slot now.
  const config = { protocol: 'h2c' as const, cluster: cluster.startupNodes, store: { liveCheckInterval: 3_600_000 } }
  const [a, b] = await Promise.all([0, 1].map(async () => await startInstance(t, config)))
  const ports = cluster.nodes.map((node) => node.port)

  await t.test('channels on every node deliver across instances, and resume on the other instance from their id', async (t) => {
    const channels = await channelsOnEveryNode(async (slot) => await cluster.ownerOf(slot), ports, 'spread-')
    const first = await Promise.all(channels.map(async (channel) => await openStream(t, a.server, `/channels/${channel}`)))
    const published = await Promise.all(channels.map(async (channel) => await b.publish(channel, ['1', '2', '3'])))
    await Promise.all(first.map(async (client) => await client.waitForEvents(3)))
    t.same(first.map(data), channels.map(() => ['1', '2', '3']), 'a publish on B reaches A\'s subscribers on every node')
    t.ok(published.flat().every((id) => /^\d+-\d+$/.test(id)), 'ids are Redis stream entry ids')
    for (const client of first) client.close()
    // Published while no one is subscribed; then each client comes back to B with the id of what it had.
    await Promise.all(channels.map(async (channel) => await a.publish(channel, ['4', '5'])))
    const resumed = await Promise.all(channels.map(async (channel, i) => await openStream(t, b.server, `/channels/${channel}`,
      { headers: { 'last-event-id': published[i][2] } })))
    await Promise.all(channels.map(async (channel) => await a.publish(channel, ['6'])))
    await Promise.all(resumed.map(async (client) => await client.waitForEvents(3)))
    t.same(resumed.map(data), channels.map(() => ['4', '5', '6']), 'each resumed after its id: what it missed, then what came after')
  })

  await t.test('a followed slot moved to another node mid-stream: every event once, in order, and the subscription follows it', async (t) => {
    const [channel] = await channelsOnEveryNode(async (slot) => await cluster.ownerOf(slot), ports, 'moved-')
    const slot = slotOf(shardTags(16)[keys.shardOf(channel)])
    const client = await openStream(t, a.server, `/channels/${channel}`)
    const [before] = await b.publish(channel, ['before'])
    await client.waitForEvents(1)
    const from = await cluster.ownerOf(slot)
    const to = ports.find((port) => port !== from) as number
    // Published at 50 a second for a second, the slot moved (keys and all) while it goes on.
    const publishing = b.steady(channel, 50, 50, 'after-')
    await client.waitForEvents(10)
    await cluster.moveSlot(slot, to)
    const { ids, failures } = await publishing
    t.same(failures, [], 'publishes go to the slot\'s new node')
    await waitUntil(client, 'change', () => client.events.some((event) => event.id === ids[49]) ? true : undefined, 'the last event')
    t.same(data(client), ['before', ...ids.map((_, n) => `after-${n}`)], 'every event once, in order, across the move')
    t.ok((await subscribers(cluster, to)).includes(keys.stream(channel)), 'subscribed on the node that serves the slot now')
    t.notOk((await subscribers(cluster, from)).includes(keys.stream(channel)), 'and no longer on the one that did')
    const late = await openStream(t, b.server, `/channels/${channel}`, { headers: { 'last-event-id': before } })
    await late.waitForEvents(50)
    t.same(data(late), ids.map((_, n) => `after-${n}`), 'a replay reads from the new node')
  })

  await t.test('a first subscriber whose instance still thinks a moved slot is on its old node: subscribed where it is now', async (t) => {
    const [channel] = await channelsOnEveryNode(async (slot) => await cluster.ownerOf(slot), ports, 'stale-')
    const slot = slotOf(shardTags(16)[keys.shardOf(channel)])
    const from = await cluster.ownerOf(slot)
    const to = ports.find((port) => port !== from) as number
    // Nothing of this slot was asked of A since: A's view of the Cluster still has it on its old node.
    await cluster.moveSlot(slot, to)
    const client = await openStream(t, a.server, `/channels/${channel}`)
    const ids = await b.publish(channel, ['1', '2', '3'])
    await waitUntil(client, 'change', () => client.events.some((event) => event.id === ids[2]) ? true : undefined, 'the last event')
    t.same(data(client), ['1', '2', '3'], 'each event once, in order')
    t.ok((await subscribers(cluster, to)).includes(keys.stream(channel)), 'subscribed on the node that serves the slot')
    t.notOk((await subscribers(cluster, from)).includes(keys.stream(channel)), 'not left on the old one')
  })

  await t.test('a channel followed before the Cluster client knows its slots (and one let go of by then): subscribed once it does', async (t) => {
    const client = new Cluster(cluster.startupNodes)
    client.on('error', () => {})
    // The store's own connections are made now: the first listen() comes before they know who serves what.
    const store = new RedisStore({ client, closeClient: true, liveCheckInterval: 3_600_000 })
    t.teardown(() => store.close())
    const heard: unknown[] = []
    store.listen('early', (event) => heard.push(event.event.data))
    const gone = (): void => {}
    store.listen('gone', gone)
    store.unlisten('gone', gone)
    await store.head('early')
    await b.publish('early', ['1', '2'])
    await eventually(() => heard.length === 2, 'both events')
    t.same(heard, ['1', '2'])
  })

  await t.test('a primary that crashes and whose replica takes over: events published once it has arrive, and replays read there', async (t) => {
    const [channel] = await channelsOnEveryNode(async (slot) => await cluster.ownerOf(slot), ports, 'failover-')
    const slot = slotOf(shardTags(16)[keys.shardOf(channel)])
    const primary = await cluster.ownerOf(slot)
    await cluster.addReplica(primary)
    const client = await openStream(t, a.server, `/channels/${channel}`)
    const [before] = await b.publish(channel, ['before'])
    await client.waitForEvents(1)
    await cluster.crash(primary)
    t.not(await cluster.ownerOf(slot), primary, 'the replica serves the slot')
    // ioredis finds the new primary on its own; a publish sent before it has may fail, with the store's coded error.
    const { ids, failures } = await b.steady(channel, 20, 50, 'after-')
    t.ok(failures.every((code) => code === 'FST_SSE_STORE_UNAVAILABLE' || code === 'FST_SSE_STORE_TIMEOUT'), 'only coded failures')
    const taken = ids.flatMap((id, n) => id === null ? [] : [`after-${n}`])
    t.ok(taken.length >= 10, 'publishing goes on once the replica took over')
    const last = ids.findLast((id) => id !== null) as string
    await waitUntil(client, 'change', () => client.events.some((event) => event.id === last) ? true : undefined, 'the last event')
    t.same(data(client), ['before', ...taken], 'every event taken, once, in order, across the failover')
    const late = await openStream(t, b.server, `/channels/${channel}`, { headers: { 'last-event-id': before } })
    await late.waitForEvents(taken.length)
    t.same(data(late), taken, 'a replay reads from the new primary')
  })
})
