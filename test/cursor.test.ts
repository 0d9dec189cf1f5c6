import { test } from 'tap'
import fc from 'fast-check'
import type { Subscription } from '../lib/channels/subscription'
import { NO_EVENT_ID, StreamCursor, refuseOwnId } from '../lib/channels/cursor'
import {
  MAX_CURSOR_CHANNELS, MAX_CURSOR_LENGTH, channelKey, cursorEntry, cursorHead, isCursor, parseCursor
} from '../lib/protocol/cursor-encoding'
import { comparePositions } from '../lib/core/position'

// The cursor of a stream of several channels: written from its subscriptions' positions, read back by a resume.
// What a subscription gives the cursor: its channel's name and its position; the rest is the cursor's own cache.
function subscriptionAt (name: string, position: string | undefined): Subscription {
  return { channel: { name }, cursorPosition: position, cursorKey: '', segment: '', segmentPosition: undefined, segmentGeneration: -1 } as unknown as Subscription
}

/** The id a stream with these subscriptions writes for an event of one of them (the first), at its position. */
function cursorOf (positions: Record<string, string | undefined>, writer = 0): string {
  const cursor = new StreamCursor(undefined)
  const subscriptions: Subscription[] = []
  for (const [name, position] of Object.entries(positions)) {
    const subscription = subscriptionAt(name, position)
    subscriptions.push(subscription)
    cursor.add(subscription, subscriptions)
  }
  const written = subscriptions[writer]
  cursor.prepare(written, subscriptions, written.cursorPosition)
  return cursor.idOf(written, written.cursorPosition)
}

/** What a resume with `id` gives each channel. */
function resumed (id: string, names: string[]): Record<string, unknown> {
  const cursor = new StreamCursor(id)
  return Object.fromEntries(names.map((name) => [name, cursor.resumeOf(name)]))
}

const memoryPosition = fc.integer({ min: 0, max: 5000 }).map((n) => String(1_796_000_000_000_000 + n))
const redisPosition = fc.tuple(fc.integer({ min: 0, max: 86_400_000 }), fc.integer({ min: 0, max: 5 }))
  .map(([ms, seq]) => `${1_796_000_000_000 + ms}-${seq}`)
const anyPosition = fc.oneof(fc.nat({ max: Number.MAX_SAFE_INTEGER }).map(String),
  fc.tuple(fc.nat({ max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: Number.MAX_SAFE_INTEGER })).map(([a, b]) => `${a}-${b}`))

test('a cursor gives every channel back its position, whatever the positions', async (t) => {
  for (const [kind, position] of [['memory', memoryPosition], ['redis', redisPosition], ['any', anyPosition]] as const) {
    fc.assert(fc.property(
      fc.uniqueArray(fc.string({ minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 50 }),
      fc.array(fc.option(position, { nil: undefined }), { minLength: 50, maxLength: 50 }), fc.nat(),
      (names, drawn, writer) => {
        const positions = Object.fromEntries(names.map((name, i) => [name, drawn[i]]))
        const id = cursorOf(positions, writer % names.length)
        if (!isCursor(id) || id.length > MAX_CURSOR_LENGTH) return false
        const back = resumed(id, names)
        // `5-0` is `5`: the same position.
        return names.every((name) => {
          const at = (back[name] as { position: string | undefined }).position
          const given = positions[name]
          return given === undefined ? at === undefined : at !== undefined && comparePositions(at, given) === 0
        })
      }), { numRuns: 300 })
    t.pass(`${kind} positions`)
  }
})

test('an entry reads back as the position it was written from, below its base as above it', async () => {
  fc.assert(fc.property(fc.nat(2 ** 48), fc.nat(2 ** 48), fc.nat(2 ** 20), fc.nat(35), (base, major, minor, salt) => {
    const position = minor === 0 ? String(major) : `${major}-${minor}`
    const key = channelKey('c', salt)
    const read = parseCursor(cursorHead(salt, base) + cursorEntry(key, position, base))
    return read?.complete === true && read.positions.get(key) === position
  }))
})

test('50 channels fit in about 600 characters; the most a stream may carry fit in MAX_CURSOR_LENGTH', async (t) => {
  const names = Array.from({ length: 50 }, (_, i) => `room:${1000 + i}`)
  // Redis: the channels' last events over the last five minutes, a few in the same millisecond.
  const redis = cursorOf(Object.fromEntries(names.map((name, i) => [name, `${1_796_000_000_000 + i * 6007}-${i % 3}`])))
  t.ok(redis.length <= 650, `50 Redis positions: ${redis.length} characters`)
  // Memory: counters a few thousand events apart.
  const memory = cursorOf(Object.fromEntries(names.map((name, i) => [name, String(1_796_000_000_000_000 + i * 997)])))
  t.ok(memory.length <= 550, `50 memory positions: ${memory.length} characters`)
  // The longest: positions as far from each other as a double holds, with the largest second parts.
  const far = Array.from({ length: MAX_CURSOR_CHANNELS }, (_, i) => [`c${i}`,
    i === 0 ? '0' : `${Number.MAX_SAFE_INTEGER}-${Number.MAX_SAFE_INTEGER}`])
  const longest = cursorOf(Object.fromEntries(far))
  t.ok(longest.length <= MAX_CURSOR_LENGTH, `${MAX_CURSOR_CHANNELS} channels at their longest: ${longest.length} characters`)
  t.ok(isCursor(longest))
  t.match(redis, /^[~0-9a-z._-]+$/, 'characters a header and a URL carry as they are')
  t.equal(encodeURIComponent(redis), redis)
})

test('keys are the same in every process and version: cursors in flight depend on them', async (t) => {
  // FNV-1a (32 bits) of the salt's code unit and then the name's, modulo 36^6: worked out apart, by hand.
  t.same([channelKey('news', 0), channelKey('news', 1), channelKey('room:7', 0)], ['0q8h1g', 'u6wfbv', 'j4gtab'])
})

/** Two names whose keys meet under salt 0: a birthday search over `room:<n>`. */
function collidingNames (): [string, string] {
  const seen = new Map<string, string>()
  for (let n = 0; ; n++) {
    const name = `room:${n}`
    const key = channelKey(name, 0)
    const other = seen.get(key)
    if (other !== undefined) return [other, name]
    seen.set(key, name)
  }
}

test('two channels of a stream whose keys meet: another salt keeps them apart', async (t) => {
  const [a, b] = collidingNames()
  t.equal(channelKey(a, 0), channelKey(b, 0), `${a} and ${b} share a key under salt 0`)
  const id = cursorOf({ [a]: '10', [b]: '20', other: '30' })
  t.notOk(id.startsWith('~0'), `another salt: ${id}`)
  t.same(resumed(id, [a, b, 'other']), { [a]: { position: '10' }, [b]: { position: '20' }, other: { position: '30' } })
})

const MISSED = { id: NO_EVENT_ID }

test('an id that is not a whole cursor resumes the channels it places; every other one is told missed', async (t) => {
  const good = cursorOf({ a: '100', b: '105-2', c: undefined })
  t.ok(isCursor(good), good)
  const key = channelKey('a', 0)
  const bad = [
    '', '100', 'own-id', '~', '~0', '~00.', '~00.abc', `~00.${key}x!`, `~00.${key}-`, `~00.${key}_1`, `~00.${key}1_`,
    `~00.${key}1_1_1`, `~00.${key.toUpperCase()}1`, '~Z0', `~0${'z'.repeat(12)}`, `~0zzzzzzzzzzz.${key}`,
    `~05.${key}-6`, `~00.${key}zzzzzzzzzzz`, `~00.${key}1_zzzzzzzzzzz`, `~00.${key}1..${key}2`, ` ${good}`, `${good} `,
    `~00${`.${key}1`.repeat(MAX_CURSOR_CHANNELS + 1)}`, `~00.${key}${'0'.repeat(MAX_CURSOR_LENGTH)}`
  ]
  // Read as far as its entries read: an entry of `a` before the cut resumes it.
  const readAsFar: Record<string, object> = {
    [`~00.${key}1..${key}2`]: { a: { position: '1' }, b: MISSED },
    [`${good} `]: { a: { position: '100' }, b: { position: '105-2' } }
  }
  for (const text of bad) {
    t.notOk(isCursor(text), `not a cursor: ${JSON.stringify(text.slice(0, 60))}`)
    t.same(resumed(text, ['a', 'b']), readAsFar[text] ?? { a: MISSED, b: MISSED }, `resumed from ${JSON.stringify(text.slice(0, 60))}`)
  }
  t.ok(isCursor(`~00${`.${key}1`.repeat(MAX_CURSOR_CHANNELS)}`), `${MAX_CURSOR_CHANNELS} entries are a cursor`)
  t.same(resumed(`~00.${key}5.${key}6.${channelKey('b', 0)}7`, ['a', 'b', 'c']), { a: MISSED, b: { position: '7' }, c: undefined },
    'an entry given twice places neither channel: it is told missed; a channel a whole cursor does not hold starts now')
  t.same(resumed(`~00.${channelKey('b', 0)}7.${key}`, ['a', 'b', 'c']), { a: { position: undefined }, b: { position: '7' }, c: undefined },
    'an entry without a position: the channel retained nothing then')
  t.same(resumed(`~0a.${key}-3`, ['a']), { a: { position: '7' } }, 'a delta below the base')
})

test('a channel is resumed once; the entries no subscription took are written on, as they came', async (t) => {
  const id = cursorOf({ a: '100', b: '105-2', c: undefined, d: '90' })
  const cursor = new StreamCursor(id)
  t.ok(cursor.resumes)
  t.same(cursor.resumeOf('b'), { position: '105-2' })
  t.same(cursor.resumeOf('b'), undefined, 'subscribed to again: from then')
  t.same(cursor.resumeOf('never-there'), undefined)
  // A stream that took b only: its ids still hold a, c and d, for a subscription to come.
  const b = subscriptionAt('b', '107')
  cursor.add(b, [b])
  cursor.prepare(b, [b], '107')
  const next = cursor.idOf(b, '107')
  t.same(resumed(next, ['a', 'b', 'c', 'd']), { a: { position: '100' }, b: { position: '107' }, c: { position: undefined }, d: { position: '90' } })
  // Built again, with a channel subscribed later whose position is below the cursor's base.
  const e = subscriptionAt('e', '3')
  cursor.add(e, [b, e])
  cursor.prepare(b, [b, e], '108')
  cursor.prepare(b, [b, e], '108')
  t.same(resumed(cursor.idOf(b, '108'), ['a', 'b', 'e']), { a: { position: '100' }, b: { position: '108' }, e: { position: '3' } })
  t.notOk(new StreamCursor(undefined).resumes)
  const plain = new StreamCursor('42')
  t.notOk(plain.resumes)
  t.same(plain.resumeOf('a'), MISSED, 'a plain id places no channel: each is told missed')
  t.same(plain.resumeOf('a'), undefined, 'once: subscribed to again, from then')
})

test('the client\'s entries are not written on under another salt, nor past the most a stream carries', async (t) => {
  const [a, b] = collidingNames()
  const cursor = new StreamCursor(cursorOf({ x: '1', y: '2' }))
  const subscriptions = [subscriptionAt(a, '5'), subscriptionAt(b, '6')]
  for (const subscription of subscriptions) cursor.add(subscription, subscriptions)
  cursor.prepare(subscriptions[0], subscriptions, '5')
  const id = cursor.idOf(subscriptions[0], '5')
  t.same(resumed(id, [a, b, 'x', 'y']), { [a]: { position: '5' }, [b]: { position: '6' }, x: undefined, y: undefined })

  const many = Object.fromEntries(Array.from({ length: MAX_CURSOR_CHANNELS }, (_, i) => [`c${i}`, String(i)]))
  const full = new StreamCursor(cursorOf(many))
  const own = Array.from({ length: 3 }, (_, i) => subscriptionAt(`own${i}`, '1'))
  for (const subscription of own) full.add(subscription, own)
  full.prepare(own[0], own, '1')
  const carried = full.idOf(own[0], '1')
  t.equal(carried.split('.').length - 1, MAX_CURSOR_CHANNELS, `${MAX_CURSOR_CHANNELS} entries, the stream's own first`)
  t.ok(isCursor(carried))
})

test('events of the stream\'s own take no id on a stream of several channels', async (t) => {
  t.throws(() => refuseOwnId({ id: '7', data: 'x' }), { code: 'FST_SSE_CURSOR_ID', message: /got id '7'/ })
  t.throws(() => refuseOwnId({ id: 0 }), { code: 'FST_SSE_CURSOR_ID' })
  for (const message of ['text', { data: 'x' }, null, 5]) refuseOwnId(message)
  t.pass('events without an id pass')
})
