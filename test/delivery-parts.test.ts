import { test } from 'tap'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { comparePositions, isPosition } from '../lib/core/position'
import { snapshotOf } from '../lib/protocol/snapshot'
import { EventStream } from '../lib/channels/event-stream'
import type { RawResponse } from '../lib/stream/response'
import { StreamGroup } from '../lib/stream/stream-group'
import { Channels } from '../lib/channels/channels'
import { ChannelSchemas } from '../lib/channels/channel-schemas'
import { MemoryStore } from '../lib/stores/memory-store'
import type { SseStore, StoredEvent, StoredEventListener } from '../lib/stores/store'
import { FakeResponse, recordingLogger } from './helpers/fake-response'
import { within } from './helpers/wait'
import { eventually } from './helpers/redis'
import { storeOver } from './helpers/store-over'

// The pieces of the delivery core one at a time, over fake responses: what the model-based test reaches only by luck.

test('positions: <n> or <n>-<n>, compared part by part as numbers', async (t) => {
  for (const good of ['0', '7', '1764619200000123', '1764619200000-0', '1764619200000-12', '9007199254740991']) {
    t.ok(isPosition(good), good)
  }
  for (const bad of ['', '-1', '01', '1-', '-', '1-01', '1.5', ' 1', '1e3', '9007199254740993', '1-9007199254740993', 'own-1']) {
    t.notOk(isPosition(bad), `'${bad}'`)
  }
  const ordered = ['0', '5', '5-1', '6-0', '10', '10-3', '10-20', '100-0']
  for (let i = 1; i < ordered.length; i++) {
    t.ok(comparePositions(ordered[i - 1], ordered[i]) < 0, `${ordered[i - 1]} < ${ordered[i]}`)
    t.ok(comparePositions(ordered[i], ordered[i - 1]) > 0, `${ordered[i]} > ${ordered[i - 1]}`)
  }
  t.equal(comparePositions('5', '5-0'), 0, '5 is 5-0')
  t.equal(comparePositions('12-3', '12-3'), 0)
  t.ok(comparePositions('9', '10') < 0, 'numbers, not text')
})

test('a snapshot is the event as JSON sees it, whatever the serializer', async (t) => {
  const json = JSON.stringify
  t.same(JSON.parse(snapshotOf({ data: { a: 1 } }, '{"a":1}', json)), { data: { a: 1 } }, 'the frame\'s JSON, reused')
  t.same(JSON.parse(snapshotOf({ event: 'e', retry: 5, comment: 'c', data: 'text' }, 'text', json)),
    { event: 'e', retry: 5, comment: 'c', data: 'text' })
  t.same(JSON.parse(snapshotOf({ data: Buffer.from('hi') }, 'aGk=', json)), { data: 'aGk=' }, 'bytes as the client gets them')
  t.same(JSON.parse(snapshotOf({ id: 'x' }, undefined, json)), {}, 'no id: the store adds its own')
  const custom = (value: unknown): string => `<${String(value)}>`
  t.same(JSON.parse(snapshotOf({ data: { a: [1] } }, '<[object Object]>', custom)), { data: { a: [1] } },
    'a custom serializer: JSON of the value')
  t.same(JSON.parse(snapshotOf({ data: 10n }, '<10>', custom)), { data: '<10>' }, 'what JSON cannot hold: the text')
  t.same(JSON.parse(snapshotOf({ data: () => 1 }, '<fn>', custom)), { data: '<fn>' }, 'what JSON leaves out: the text')
})

/** A stream over a fake response, subscribed to `channel` of channels over `store`. */
function harness (store: SseStore): { channels: Channels, open: (name: string, lastEventId?: string) => { res: FakeResponse, stream: EventStream }, log: ReturnType<typeof recordingLogger> } {
  const log = recordingLogger()
  const openStreams = new StreamGroup(0, 1024 * 1024, 0)
  const channels = new Channels(store, JSON.stringify, log, new ChannelSchemas({} as unknown as FastifyInstance, JSON.stringify))
  const open = (name: string, lastEventId?: string): { res: FakeResponse, stream: EventStream } => {
    const res = new FakeResponse()
    const stream = new EventStream(res as unknown as RawResponse, log, lastEventId, JSON.stringify, openStreams)
    stream.open(200, {}, undefined, false)
    channels.channel(name).subscribe(stream, undefined, lastEventId === undefined ? undefined : { id: lastEventId })
    return { res, stream }
  }
  return { channels, open, log }
}

/** The memory store, with a head() of the test's. */
function withHead (head: SseStore['head']): SseStore {
  return storeOver(new MemoryStore(), { head })
}

test('a store with head(): a new subscriber gets exactly what comes after it, even while head() is on its way', async (t) => {
  let answer!: (position: string | undefined) => void
  const { channels, open } = harness(withHead(async () => await new Promise((resolve) => { answer = resolve })))
  const news = channels.channel('news')
  const before = await news.publish('before')
  const { res, stream } = open('news')
  await news.publish('meanwhile')
  // The store says the subscriber came in after `before`: `meanwhile` is owed, and written once head() answers.
  answer(before)
  await news.publish('after')
  stream.close()
  await once(res, 'close')
  t.same(res.events.map((event) => event.data), ['meanwhile', 'after'])
})

test('a store with head(): events handed over while head() is on its way are held, then written from its answer on', async (t) => {
  // The tick's events reach the subscriber before head() answers (above, they come after): they wait in it.
  for (const [answerWith, expected] of [['before', ['meanwhile', 'after']], ['meanwhile', ['after']]] as const) {
    let answer!: (position: string | undefined) => void
    const { channels, open } = harness(withHead(async () => await new Promise((resolve) => { answer = resolve })))
    const news = channels.channel('news')
    const positions = { before: await news.publish('before'), meanwhile: '' }
    const { res, stream } = open('news')
    positions.meanwhile = await news.publish('meanwhile')
    await within(new Promise((resolve) => setImmediate(resolve)), 'a turn')
    t.same(res.events, [], `${answerWith}: nothing written before head() answers`)
    answer(positions[answerWith])
    await news.publish('after')
    stream.close()
    await once(res, 'close')
    t.same(res.events.map((event) => event.data), expected, `${answerWith}: exactly what comes after it, once`)
  }
})

test('a store whose head() throws or rejects: the subscriber gets what its listeners hand over from then on', async (t) => {
  for (const head of [() => { throw new Error('no head') }, async () => { throw new Error('no head') }]) {
    const { channels, open, log } = harness(withHead(head))
    const news = channels.channel('news')
    await news.publish('before')
    const { res, stream } = open('news')
    await news.publish('after')
    await within(new Promise((resolve) => setImmediate(resolve)), 'a turn')
    stream.close()
    await once(res, 'close')
    t.same(res.events.map((event) => event.data), ['after'])
    t.same(log.records.filter((record) => record.level !== 'warn' || record.msg !== ''), [], 'nothing above debug')
  }
})

test('a store whose head() answers at once is used as it is', async (t) => {
  const { channels, open } = harness(withHead(() => undefined))
  const news = channels.channel('news')
  const { res, stream } = open('news')
  await news.publish('first')
  stream.close()
  await once(res, 'close')
  t.same(res.events.map((event) => event.data), ['first'])
})

test('a replay that answers after its stream is gone writes nothing, and logs nothing', async (t) => {
  let answer!: (value: never) => void
  let fail!: (error: Error) => void
  const inner = new MemoryStore()
  const store: SseStore = {
    append: (channel, event) => inner.append(channel, event),
    readAfter: async () => await new Promise((resolve, reject) => { answer = resolve; fail = reject }),
    listen: (channel, listener) => inner.listen(channel, listener),
    unlisten: (channel, listener) => inner.unlisten(channel, listener),
    close: () => inner.close()
  }
  const { open, log } = harness(store)
  const first = open('news', 'some-id')
  first.res.disconnect()
  await once(first.res, 'close')
  answer({ found: false, events: [] } as never)
  const second = open('news', 'some-id')
  second.res.disconnect()
  await once(second.res, 'close')
  fail(new Error('too late'))
  await within(new Promise((resolve) => setImmediate(resolve)), 'a turn')
  t.same(first.res.events, [])
  t.same(second.res.events, [])
  t.same(log.records, [])
})

test('a replay that fails: logged as an error, unless its stream was closing already', async (t) => {
  const inner = new MemoryStore()
  let fail!: (error: Error) => void
  const store: SseStore = {
    append: (channel, event) => inner.append(channel, event),
    readAfter: async () => await new Promise((resolve, reject) => { fail = reject }),
    listen: (channel, listener) => inner.listen(channel, listener),
    unlisten: (channel, listener) => inner.unlisten(channel, listener),
    close: () => inner.close()
  }
  const { open, log } = harness(store)
  const failing = open('news', 'some-id')
  fail(new Error('store away'))
  await once(failing.res, 'close')
  t.match(log.records, [{ level: 'error', msg: /the replay of a channel failed/ }])
  const closing = open('news', 'some-id')
  closing.stream.close()
  t.equal(closing.stream.hasEnded, false, 'the close waits for the replay')
  fail(new Error('store closed'))
  await once(closing.res, 'close')
  t.equal(log.records.length, 1, 'nothing more above debug')
})

test('a channel closes once the store hands back its own last publish, or warns after a bound', async (t) => {
  const { mock } = await import('node:test')
  const inner = new MemoryStore()
  // A store whose listeners never get anything: the channel waits for its own publish, then gives up.
  const store = storeOver(inner, { listen: () => {}, unlisten: () => {} })
  const { channels, open, log } = harness(store)
  const news = channels.channel('news')
  const { res, stream } = open('news')
  await news.publish('never handed back')
  mock.timers.enable({ apis: ['setTimeout'] })
  t.teardown(() => mock.timers.reset())
  const closed = news.close()
  t.equal(stream.hasEnded, false, 'the stream waits for the publish to come back')
  mock.timers.tick(5000)
  await closed
  await once(res, 'close')
  t.equal(stream.hasEnded, true)
  t.match(log.records, [{ level: 'warn', msg: /did not hand back this process's last publishes in time/ }])
})

test('a stream closed before the store hands back its channel\'s own publish ends once it does, with it', async (t) => {
  const inner = new MemoryStore()
  // A store that hands events to its listeners when the test says (as Redis does, later than append() resolves).
  const listeners: StoredEventListener[] = []
  const stored: StoredEvent[] = []
  const store = storeOver(inner, {
    append: async (channel, event) => { const one = await inner.append(channel, event); stored.push(one); return one },
    listen: (channel, listener) => { listeners.push(listener) },
    unlisten: () => {}
  })
  const { channels, open, log } = harness(store)
  const news = channels.channel('news')
  const { res, stream } = open('news')
  await news.publish('handed back later')
  stream.close()
  t.equal(stream.hasEnded, false, 'the stream waits for the publish to come back')
  for (const listener of listeners) for (const event of stored) listener(event)
  await within(once(res, 'close'), 'the end, once the publish is back')
  t.same(res.events.map((event) => event.data), ['handed back later'], 'ended with it')
  t.same(log.records, [], 'no warning')
})

test('a stream dropped again, or after its connection closed, frees its slot once: the others still count', async (t) => {
  const log = recordingLogger()
  const openStreams = new StreamGroup(0, 1024 * 1024, 0)
  const open = (): { res: FakeResponse, stream: EventStream } => {
    const res = new FakeResponse()
    const stream = new EventStream(res as unknown as RawResponse, log, undefined, JSON.stringify, openStreams)
    stream.open(200, {}, undefined, false)
    return { res, stream }
  }
  const staying = open()
  const dropped = open()
  const gone = open()
  t.equal(openStreams.size, 3)
  dropped.stream.destroy(new Error('dropped'))
  dropped.stream.destroy(new Error('dropped again'))
  gone.res.disconnect()
  await once(gone.res, 'close')
  gone.stream.destroy(new Error('dropped after its client left'))
  t.equal(openStreams.size, 1, 'only the stream still open counts')
  staying.stream.send('still here')
  staying.stream.close()
  await once(staying.res, 'close')
  t.same(staying.res.events.map((event) => event.data), ['still here'])
  t.same(log.records, [])
})

test('a filter that throws while its stream catches up before an own send(): that stream closes, the others get it', async (t) => {
  const { channels, log } = harness(new MemoryStore())
  const openStreams = new StreamGroup(0, 1024 * 1024, 0)
  const news = channels.channel('news')
  const streamWith = (filter: ((event: { data?: unknown }) => boolean) | undefined): { res: FakeResponse, stream: EventStream } => {
    const res = new FakeResponse()
    const stream = new EventStream(res as unknown as RawResponse, log, undefined, JSON.stringify, openStreams)
    stream.open(200, {}, undefined, false)
    news.subscribe(stream, filter, undefined)
    return { res, stream }
  }
  const broken = streamWith((event) => { if (event.data === 'bad') throw new Error('broken filter'); return true })
  const other = streamWith(undefined)
  const published = news.publish('bad')
  await published
  t.equal(broken.stream.send('own'), false, 'its catch-up ran the filter, which closed the stream')
  await once(broken.res, 'close')
  t.same(broken.res.events, [])
  other.stream.close()
  await once(other.res, 'close')
  t.same(other.res.events.map((event) => event.data), ['bad'])
  t.match(log.records, [{ level: 'error', msg: /a subscription filter threw/ }])
})

test('a compressed stream whose client stops reading: what the compressor holds counts, and it is dropped as slow', async (t) => {
  const { randomBytes } = await import('node:crypto')
  const log = recordingLogger()
  const openStreams = new StreamGroup(0, 16 * 1024, 0)
  const res = new FakeResponse()
  res.setMode('stalled')
  const stream = new EventStream(res as unknown as RawResponse, log, undefined, JSON.stringify, openStreams)
  stream.open(200, {}, undefined, false, 'gzip')
  const send = (): boolean => stream.send(randomBytes(3000).toString('base64'))
  // First the compressor's output reaches the client, which holds it: from then on its input waits for the client, not
  // for the CPU (on a busy machine, sending on at once could fill what waits for the compressor first).
  send()
  await eventually(() => res.writableNeedDrain, 'the compressed output to reach the stalled client')
  t.equal(stream.closed, false, 'one event the client holds is not behind')
  let mostBuffered = 0
  await within((async () => {
    while (!stream.closed) {
      send()
      mostBuffered = Math.max(mostBuffered, stream.bufferedBytes)
      await new Promise((resolve) => setImmediate(resolve))
    }
  })(), 'the stalled compressed client to be dropped')
  t.ok(mostBuffered > 0, 'what waits in and after the compressor is counted')
  t.match(stream.signal.reason, { code: 'FST_SSE_SLOW_CLIENT' })
  t.equal(openStreams.size, 0, 'its slot is free')
  t.match(log.records, [{ level: 'warn', msg: /fell behind/ }])
})

test('a subscriber whose client leaves while head() is on its way gets nothing, and its channel goes on', async (t) => {
  let answer!: (position: string | undefined) => void
  const { channels, open, log } = harness(withHead(async () => await new Promise((resolve) => { answer = resolve })))
  const news = channels.channel('news')
  const before = await news.publish('before')
  const { res } = open('news')
  await news.publish('meanwhile')
  res.disconnect()
  await once(res, 'close')
  answer(before)
  await within(new Promise((resolve) => setImmediate(resolve)), 'a turn')
  t.same(res.events, [])
  t.equal(news.subscribers, 0)
  t.same(log.records, [])
})

test('a stream closed before it subscribes is answered at once and not subscribed', async (t) => {
  const { channels } = harness(new MemoryStore())
  const res = new FakeResponse()
  const stream = new EventStream(res as unknown as RawResponse, recordingLogger(), undefined, JSON.stringify, new StreamGroup(0, 1024, 0))
  stream.open(200, {}, undefined, false)
  stream.close()
  const news = channels.channel('news')
  const answers: unknown[] = []
  // The stream's join() checks it (Channel.subscribe() is given open streams only).
  stream.join(news, undefined, false, (error) => answers.push(error))
  t.same(answers, [undefined])
  t.equal(news.subscribers, 0)
})

test('a subscription let go of twice counts once', async (t) => {
  const { channels, open } = harness(new MemoryStore())
  const news = channels.channel('news')
  const { stream } = open('news')
  const [subscription] = stream.subscriptions
  news.unsubscribe(subscription)
  news.unsubscribe(subscription)
  t.equal(news.subscribers, 0)
})

test('head() answering at once answers the stream at once; answering late, only what comes after its position is written', async (t) => {
  const atOnce = harness(withHead(() => undefined))
  const { res: quick, stream: quickStream } = atOnce.open('other')
  const answers: unknown[] = []
  const stream = new EventStream(new FakeResponse() as unknown as RawResponse, recordingLogger(), undefined, JSON.stringify, new StreamGroup(0, 1024, 0))
  stream.open(200, {}, undefined, false)
  atOnce.channels.channel('news').subscribe(stream, undefined, undefined, (error) => answers.push(error))
  t.same(answers, [undefined], 'answered in the call')
  stream.close()
  quickStream.close()
  await once(quick, 'close')

  let answer!: (position: string | undefined) => void
  const { channels, open } = harness(withHead(async () => await new Promise((resolve) => { answer = resolve })))
  const news = channels.channel('news')
  const { res, stream: late } = open('news')
  const meanwhile = await news.publish('meanwhile')
  // The store says the subscriber came in after `meanwhile`: nothing it holds back is owed.
  answer(meanwhile)
  await news.publish('after')
  late.close()
  await once(res, 'close')
  t.same(res.events.map((event) => event.data), ['after'])
})
