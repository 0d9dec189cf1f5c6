import { test } from 'tap'
import fc from 'fast-check'
import type { StoredEvent } from '../lib/stores/store'
import type { Entry } from '../lib/stores/redis/scripts'
import { Follow, MAX_WAITING, positionBefore } from '../lib/stores/redis/follow'
import { comparePositions } from '../lib/core/position'

// How a followed channel turns what Redis hands it into what its listeners get, searched over interleavings without
// Redis: entries appended to a stream (trimmed from its oldest), their live messages arriving in order unless the
// subscription is lost (then they are gone), subscriptions confirmed again, reads of what was missed answered late,
// with the stream as it is by then (in pages), or refused. The suites with a real Redis (test/redis-live.test.ts,
// test/redis-cluster.test.ts) make the same things happen for real; this one makes them happen in every order.

const PAGE = 3

type Action =
  | { kind: 'publish' } | { kind: 'silent' } | { kind: 'lose' } | { kind: 'deliver', count: number } | { kind: 'drop' }
  | { kind: 'subscribe' } | { kind: 'position' } | { kind: 'answer' } | { kind: 'refuse' } | { kind: 'trim', count: number }
  | { kind: 'check' } | { kind: 'refuseSubscription' }

// What Redis does without a word: an entry appended with no message (an instance of the XREAD design), a message lost;
// and a subscription it refuses (an ACL): no message comes.
const unannounced: fc.Arbitrary<Action> = fc.constantFrom({ kind: 'silent' as const }, { kind: 'lose' as const },
  { kind: 'refuseSubscription' as const })

const action: fc.Arbitrary<Action> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'publish' as const }), weight: 6 },
  { arbitrary: fc.integer({ min: 1, max: 4 }).map((count) => ({ kind: 'deliver' as const, count })), weight: 5 },
  { arbitrary: fc.constant({ kind: 'drop' as const }), weight: 1 },
  { arbitrary: fc.constant({ kind: 'subscribe' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'position' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'answer' as const }), weight: 4 },
  { arbitrary: fc.constant({ kind: 'refuse' as const }), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 6 }).map((count) => ({ kind: 'trim' as const, count })), weight: 1 },
  { arbitrary: fc.constant({ kind: 'check' as const }), weight: 1 }
)

class World {
  // Every entry ever appended, and how many of the oldest were trimmed.
  readonly entries: Entry[] = []
  trimmed = 0
  // Messages published while subscribed, not handed over yet.
  network: string[] = []
  subscribed = false
  // How many entries there were when following began (the follow is owed those after).
  head: number | undefined
  // Reads asked for, each with the stream as it stands when it is read (when asked: sent in the next tick).
  readonly requests: Array<{ follow: Follow, length: number, trimmed: number }> = []
  readonly delivered: StoredEvent[] = []
  readonly follow = new Follow('c', 'sse:{0}c', 'sse:{0}c', 0, {
    request: (follow) => this.requests.push({ follow, length: this.entries.length, trimmed: this.trimmed })
  })

  constructor () {
    this.follow.listeners.add((event) => this.delivered.push(event))
  }

  apply (step: Action): void {
    const follow = this.follow
    switch (step.kind) {
      case 'publish':
      case 'silent': {
        const n = this.entries.length + 1
        const previous = this.entries.length === this.trimmed ? '0-0' : this.entries[this.entries.length - 1][0]
        const entry: Entry = [`${n}-0`, ['t', `data: ${n}\n\n`]]
        this.entries.push(entry)
        if (this.subscribed && step.kind === 'publish') this.network.push(`${entry[0]} ${previous} ${JSON.stringify(entry[1])}`)
        break
      }
      case 'lose':
        this.network.shift()
        break
      case 'deliver':
        for (const message of this.network.splice(0, step.count)) follow.message(message)
        break
      case 'drop':
        // The connection dropped: what was on its way is lost.
        this.subscribed = false
        this.network = []
        follow.unsubscribed()
        break
      case 'refuseSubscription':
        this.subscribed = false
        this.network = []
        follow.subscriptionRefused()
        break
      case 'subscribe':
        // Redis confirmed a subscription (again, perhaps: a second confirmation of the same is harmless).
        this.subscribed = true
        follow.subscribed()
        break
      case 'position':
        if (this.head !== undefined) break
        this.head = this.entries.length
        follow.positioned(this.entries.length === this.trimmed ? '0-0' : this.entries[this.entries.length - 1][0])
        break
      case 'answer': {
        const request = this.requests.shift()
        if (request !== undefined) this.answer(request.follow, request.length, request.trimmed)
        break
      }
      case 'refuse':
        this.requests.shift()?.follow.readRefused()
        break
      case 'trim':
        // A stream never trims its newest entry.
        this.trimmed = Math.max(this.trimmed, Math.min(this.trimmed + step.count, this.entries.length - 1))
        break
      case 'check':
        follow.catchUp()
        break
    }
  }

  /** As the catch-up script reads the stream of `length` entries, `trimmed` of them gone, after the follow's position. */
  answer (follow: Follow, length: number, trimmed: number): void {
    const position = follow.position as string
    const retained = this.entries.slice(trimmed, length)
    const after = retained.filter(([id]) => comparePositions(id, position) > 0)
    const page = after.slice(0, PAGE)
    const positionRetained = retained.some(([id]) => id === position)
    const missed = page.length > 0 && !positionRetained && retained[0][0] === page[0][0] && trimmed > 0
    follow.caughtUp(page, missed, page.length === PAGE)
  }

  /**
   * Everything settles, with no live check: subscribed, positioned, every message handed over, every read answered.
   * With `lastMessage`, a last entry is published, its message handed over.
   */
  settle (lastMessage: boolean): void {
    if (!this.subscribed) this.apply({ kind: 'subscribe' })
    this.apply({ kind: 'position' })
    const drain = (): void => {
      for (let rounds = 0; this.network.length > 0 || this.requests.length > 0; rounds++) {
        if (rounds > 10_000) throw new Error('does not settle')
        this.apply({ kind: 'deliver', count: this.network.length })
        while (this.requests.length > 0) this.apply({ kind: 'answer' })
      }
    }
    drain()
    if (!lastMessage) return
    this.apply({ kind: 'publish' })
    drain()
  }
}

function check (world: World): void {
  const events = world.delivered
  const head = world.head as number
  for (let i = 1; i < events.length; i++) {
    if (comparePositions(events[i - 1].position, events[i].position) >= 0) {
      throw new Error(`position ${events[i].position} after ${events[i - 1].position}`)
    }
  }
  // Every entry owed (after the head) is handed over, in order, or was trimmed, and then a missed event said so.
  let expected = head
  let missedSaid = false
  for (const event of events) {
    if (event.missed === true) {
      // Said only when the last entry handed over (or where following began) is no longer retained.
      if (world.trimmed < Math.max(expected, 1)) throw new Error(`missed after entry ${expected}, which is retained`)
      missedSaid = true
      continue
    }
    const n = Number(event.position.split('-')[0])
    if (n <= head) throw new Error(`entry ${n} is not owed: following began after entry ${head}`)
    if (n !== expected + 1 && !missedSaid) throw new Error(`entry ${n} after ${expected} with no missed event between`)
    if (event.frame !== `id: ${n}-0\ndata: ${n}\n\n`) throw new Error(`entry ${n} handed over as ${JSON.stringify(event.frame)}`)
    expected = n
    missedSaid = false
  }
  if (expected !== world.entries.length) throw new Error(`settled at entry ${expected} of ${world.entries.length}`)
}

function run (steps: readonly Action[], lastMessage: boolean): World {
  const world = new World()
  for (const step of steps) world.apply(step)
  world.settle(lastMessage)
  check(world)
  return world
}

test('a followed channel hands its listeners every entry after where it began, once, in order, or missed where trimmed', async (t) => {
  const runs = Number(process.env.FC_RUNS ?? 2000)
  let missed = 0
  // Whatever Redis loses without a word, the next message that comes brings it back (no live check needed).
  fc.assert(fc.property(fc.array(fc.oneof(action, unannounced), { maxLength: 80 }), (steps) => {
    if (run(steps, true).delivered.some((event) => event.missed === true)) missed++
  }), { numRuns: runs })
  t.pass(`${runs} interleavings with entries Redis gave no message for, or lost one of, then a last message`)
  // What pub/sub loses while the subscription is lost, the read once it is back brings, with no message after (a read
  // Redis refused is left to the live check: not here).
  fc.assert(fc.property(fc.array(action.filter((step) => step.kind !== 'refuse'), { maxLength: 80 }), (steps) => {
    if (run(steps, false).delivered.some((event) => event.missed === true)) missed++
  }), { numRuns: runs })
  t.pass(`${runs} interleavings of subscriptions lost and taken again, with no message after`)
  t.ok(missed > 0, `some were trimmed past a follow's position (${missed})`)
})

test('a missed event stands right before the oldest entry retained, and says it as a replay does', async (t) => {
  t.equal(positionBefore('1700000000000-5'), '1700000000000-4')
  t.equal(positionBefore('1700000000000-0'), `1699999999999-${Number.MAX_SAFE_INTEGER}`)
  const world = new World()
  for (const kind of ['position', 'subscribe', 'answer', 'publish', 'drop', 'publish', 'publish', 'publish', 'publish'] as const) {
    world.apply({ kind })
  }
  world.apply({ kind: 'trim', count: 3 })
  world.apply({ kind: 'subscribe' })
  world.apply({ kind: 'answer' })
  t.same(world.delivered.map((event) => event.id), ['', '4-0', '5-0'], 'entry 1 was lost with the connection, then trimmed')
  const [missed] = world.delivered
  t.match(missed, { id: '', position: `3-${Number.MAX_SAFE_INTEGER}`, missed: true })
  t.equal(missed.frame, 'event: missed\ndata: {"channel":"c","oldestId":"4-0"}\n\n')
  t.same(missed.event, { id: '', event: 'missed', data: { channel: 'c', oldestId: '4-0' } })
  t.ok(Object.isFrozen(missed.event), 'read-only, as every stored event')
})

test('a subscription taken again while a read is on its way: read again after it, since it may have been read before', async (t) => {
  const world = new World()
  const steps: Action[] = ['position', 'subscribe', 'drop', 'publish', 'subscribe', 'answer'].map((kind) => ({ kind }) as Action)
  for (const step of steps) world.apply(step)
  t.equal(world.requests.length, 1, 'read again')
  world.apply({ kind: 'answer' })
  t.same(world.delivered.map((event) => event.id), ['1-0'], 'the entry published while the subscription was lost')
})

test(`more than ${MAX_WAITING} messages while a read is on its way: let go of, and read from the stream`, async (t) => {
  const world = new World()
  for (const kind of ['position', 'subscribe'] as const) world.apply({ kind })
  for (let i = 0; i <= MAX_WAITING; i++) world.apply({ kind: 'publish' })
  world.apply({ kind: 'deliver', count: MAX_WAITING + 1 })
  t.equal(world.requests.length, 1, 'one read on its way, the messages waiting')
  world.settle(true)
  check(world)
  t.equal(world.delivered.length, MAX_WAITING + 2, 'every entry once, in order')
})

test('an event both read by a catch-up and received live is handed over once', async (t) => {
  const world = new World()
  for (const kind of ['position', 'subscribe', 'answer', 'publish', 'silent', 'publish', 'publish'] as const) world.apply({ kind })
  // Entry 3's message says entry 2 came before: a gap. The read on finds 2, 3 and 4; 4's message then arrives too.
  world.apply({ kind: 'deliver', count: 2 })
  t.equal(world.requests.length, 1, 'the gap is read from the stream')
  world.apply({ kind: 'answer' })
  world.apply({ kind: 'deliver', count: 1 })
  t.same(world.delivered.map((event) => event.id), ['1-0', '2-0', '3-0', '4-0'], 'each once, in order')
})
