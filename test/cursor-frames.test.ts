import { test } from 'tap'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { EventStream } from '../lib/channels/event-stream'
import type { RawResponse } from '../lib/stream/response'
import { StreamGroup } from '../lib/stream/stream-group'
import { Channels } from '../lib/channels/channels'
import { ChannelSchemas } from '../lib/channels/channel-schemas'
import { MemoryStore } from '../lib/stores/memory-store'
import { channelKey, parseCursor } from '../lib/protocol/cursor-encoding'
import { comparePositions } from '../lib/core/position'
import { FakeResponse, recordingLogger } from './helpers/fake-response'

// Streams of several channels write their cursor as each event's id. Those that stand at the same place (the same
// channels, at the same positions) write the same frames: built once a flush, one Buffer that each writes as it is.
// Whatever the streams share, each must get exactly its events, each with the cursor of where it stands.

const nextTurn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

interface Opened {
  res: FakeResponse
  stream: EventStream
  /** Every chunk handed to the response, as it was handed. */
  chunks: Array<string | Buffer>
}

function harness (names: string[]): { channels: Channels, open: (lastEventId?: string, carried?: string[]) => Opened } {
  const log = recordingLogger()
  const group = new StreamGroup(0, 64 * 1024 * 1024, 0)
  const channels = new Channels(new MemoryStore(), JSON.stringify, log, new ChannelSchemas({} as unknown as FastifyInstance, JSON.stringify))
  const open = (lastEventId?: string, carried = names): Opened => {
    const res = new FakeResponse(1024 * 1024)
    const chunks: Array<string | Buffer> = []
    const write = res.write.bind(res) as (chunk: string | Buffer) => boolean
    res.write = ((chunk: string | Buffer) => {
      chunks.push(chunk)
      return write(chunk)
    }) as typeof res.write
    const stream = new EventStream(res as unknown as RawResponse, log, lastEventId, JSON.stringify, group)
    stream.open(200, {}, undefined, false)
    for (const name of carried) stream.join(channels.channel(name), undefined, true)
    return { res, stream, chunks }
  }
  return { channels, open }
}

/** The position each channel holds in a cursor, by name (undefined: none yet). */
function positionsIn (id: string, names: string[]): Record<string, string | undefined> {
  const cursor = parseCursor(id)
  if (cursor?.complete !== true) throw new Error(`not a cursor: ${id}`)
  return Object.fromEntries(names.map((name) => [name, cursor.positions.get(channelKey(name, cursor.salt)) ?? undefined]))
}

test('streams that stand at the same place write one Buffer; one that joins later shares it once it stands there too', async (t) => {
  const names = ['prices', 'alerts', 'news']
  const { channels, open } = harness(names)
  const first = open()
  const second = open()
  await channels.channel('prices').publish('p0')
  await nextTurn()
  // Joins after p0: it starts where the others stand now.
  const third = open()
  for (const name of names) await channels.channel(name).publish(`${name}:1`)
  await nextTurn()
  const last = (opened: Opened): Array<string | Buffer> => opened.chunks.slice(-3)
  for (let i = 0; i < 3; i++) {
    t.ok(Buffer.isBuffer(last(first)[i]), 'a Buffer')
    t.equal(last(second)[i], last(first)[i], `the same Buffer for the second stream (flush ${i + 1})`)
    t.equal(last(third)[i], last(first)[i], `and for the stream that joined later (flush ${i + 1})`)
  }
  await nextTurn()
  t.same(third.res.events.map((event) => event.data), ['prices:1', 'alerts:1', 'news:1'])
  t.same(first.res.events.map((event) => event.data), ['p0', 'prices:1', 'alerts:1', 'news:1'])
  t.same(third.res.events.map((event) => event.id), first.res.events.slice(1).map((event) => event.id), 'the same cursors')
})

test('a stream that came back with a cursor of its own writes its own frames, right', async (t) => {
  const names = ['a', 'b']
  const { channels, open } = harness(names)
  const fresh = open()
  await channels.channel('a').publish('a:0')
  await nextTurn()
  await nextTurn()
  // The client's cursor names a channel this stream does not carry: it is written on, so its ids are its own.
  const foreign = `${fresh.res.events[0].id as string}.${channelKey('elsewhere', 0)}5`
  const resumed = open(foreign)
  await channels.channel('b').publish('b:0')
  await nextTurn()
  await nextTurn()
  t.not(resumed.chunks.at(-1), fresh.chunks.at(-1), 'not the same Buffer')
  const id = resumed.res.events.at(-1)?.id as string
  t.ok(id.endsWith(`.${channelKey('elsewhere', 0)}5`), `its client's entry written on: ${id}`)
  t.same(positionsIn(id, names), positionsIn(fresh.res.events.at(-1)?.id as string, names), 'the same positions')
})

test('streams of any channels, opened and resumed at any time, each get their events once, in order, each id the cursor of where they stand', async (t) => {
  const names = ['c0', 'c1', 'c2']
  // The channels a stream carries, in its order: streams of other lists meet streams of this one in every flush.
  const list = fc.shuffledSubarray(names, { minLength: 1 })
  const step = fc.oneof(
    { weight: 4, arbitrary: fc.record({ publish: fc.array(fc.nat({ max: names.length - 1 }), { minLength: 1, maxLength: 6 }) }) },
    { weight: 2, arbitrary: fc.record({ open: list }) },
    { weight: 1, arbitrary: fc.record({ resume: fc.nat() }) }
  )
  await fc.assert(fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), async (steps) => {
    const { channels, open } = harness(names)
    // What was published, in order, by channel; and each stream with where it started on each channel.
    const published: Record<string, Array<{ position: string, data: string }>> = Object.fromEntries(names.map((name) => [name, []]))
    const streams: Array<{ opened: Opened, start: Record<string, string | undefined>, carried: string[] }> = []
    let n = 0
    const openAt = (carried: string[], lastEventId?: string): void => {
      const start = lastEventId === undefined
        ? Object.fromEntries(carried.map((name) => [name, published[name].at(-1)?.position]))
        : positionsIn(lastEventId, carried)
      streams.push({ opened: open(lastEventId, carried), start, carried })
    }
    for (const s of steps) {
      if ('publish' in s) {
        // All in one tick: one flush a channel.
        for (const c of s.publish) {
          const data = `${names[c]}:${n++}`
          const stored = await channels.channel(names[c]).publish(data)
          published[names[c]].push({ position: stored, data })
        }
      } else if ('open' in s) {
        openAt(s.open)
      } else {
        const withIds = streams.filter(({ opened }) => opened.res.events.some((event) => event.id !== undefined))
        if (withIds.length === 0) continue
        const { opened, carried } = withIds[s.resume % withIds.length]
        openAt(carried, opened.res.events.findLast((event) => event.id !== undefined)?.id)
      }
      await nextTurn()
      await nextTurn()
    }
    await nextTurn()
    await nextTurn()
    for (const [i, { opened, start, carried }] of streams.entries()) {
      // What it is owed: every event after where it started, on each channel it carries.
      const at = { ...start }
      const owed = carried.flatMap((name) => published[name].filter(({ position }) =>
        start[name] === undefined || comparePositions(position, start[name] as string) > 0))
      const got = opened.res.events.filter((event) => event.event !== 'missed')
      // Each channel's in the order published, once; channels interleave as their flushes come.
      for (const name of carried) {
        const of = (list: string[]): string => list.filter((data) => data.startsWith(`${name}:`)).join(' ')
        if (of(got.map((event) => event.data)) !== of(owed.map(({ data }) => data))) {
          throw new Error(`stream ${i}: got ${got.map((event) => event.data).join(' ')}, owed ${owed.map(({ data }) => data).join(' ')}`)
        }
      }
      for (const event of got) {
        const name = event.data.split(':')[0]
        at[name] = published[name].find(({ data }) => data === event.data)?.position
        const cursor = positionsIn(event.id as string, carried)
        for (const each of carried) {
          const expected = at[each]
          const written = cursor[each]
          if (expected === undefined ? written !== undefined : written === undefined || comparePositions(written, expected) !== 0) {
            throw new Error(`stream ${i}, event ${event.data}: ${each} at ${String(written)}, not ${String(expected)}`)
          }
        }
      }
    }
  }), { numRuns: 150 })
  t.pass('every stream got what it was owed, each id where it stood')
})
