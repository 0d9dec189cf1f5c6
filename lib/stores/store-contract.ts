import assert from 'node:assert/strict'
import type { ControlHandler, ControlMember, ControlMessage, SseStore, SseStoreControl, StoredEvent } from './store'
import { comparePositions, isPosition } from '../core/position'

/** What the contract is given: a way to make stores over one shared backend (one per "process"), and its limits. */
export interface StoreContractSubject {
  /**
   * A new store over the same backend as the others of this check (for a Redis store: a new client on the same
   * server, as another instance would have), its history limited to `historySize` events a channel.
   */
  makeStore: (historySize: number) => SseStore | Promise<SseStore>
  /** A channel name no other check uses (a store over a shared server keeps what earlier runs left). */
  channelName: () => string
  /**
   * True if the store trims history only about `historySize` (Redis trims whole nodes: `MAXLEN ~`), and may keep
   * more than that, never fewer.
   * @default false
   */
  approximateHistory?: boolean
}

/** One check of the contract: give it to your test runner as `test(check.name, () => check.run(subject))`. */
export interface StoreContractCheck {
  name: string
  run: (subject: StoreContractSubject) => Promise<void>
}

let nextEvent = 0

/** An event as a channel hands it to its store: a framed body, and the JSON snapshot of the event. */
function eventToStore (id?: string): { id: string | undefined, body: string, snapshot: string, n: number } {
  const n = nextEvent++
  return { id, body: `data: ${n}\n\n`, snapshot: JSON.stringify({ data: { n } }), n }
}

async function append (store: SseStore, channel: string, id?: string): Promise<StoredEvent> {
  return await store.append(channel, eventToStore(id))
}

/** Resolves with the events `count` listeners calls brought, once they have all come, or rejects after 5 s. */
function collect (store: SseStore, channel: string, count: number): { events: StoredEvent[], all: Promise<StoredEvent[]>, stop: () => void } {
  const events: StoredEvent[] = []
  let done!: (value: StoredEvent[]) => void
  let fail!: (error: Error) => void
  const all = new Promise<StoredEvent[]>((resolve, reject) => { done = resolve; fail = reject })
  const timer = setTimeout(() => fail(new Error(`timed out after 5000 ms waiting for ${count} events (got ${events.length})`)), 5000)
  const listener = (event: StoredEvent): void => {
    events.push(event)
    if (events.length === count) {
      clearTimeout(timer)
      done(events)
    }
  }
  store.listen(channel, listener)
  return { events, all, stop: () => { clearTimeout(timer); store.unlisten(channel, listener) } }
}

async function withStores (subject: StoreContractSubject, count: number, historySize: number,
  check: (stores: SseStore[]) => Promise<void>): Promise<void> {
  const stores: SseStore[] = []
  try {
    for (let i = 0; i < count; i++) stores.push(await subject.makeStore(historySize))
    await check(stores)
  } finally {
    await Promise.all(stores.map(async (store) => await store.close()))
  }
}

function positions (events: readonly StoredEvent[]): string[] {
  return events.map((event) => event.position)
}

function assertIncreasing (events: readonly StoredEvent[], what: string): void {
  for (let i = 1; i < events.length; i++) {
    assert.ok(comparePositions(events[i - 1].position, events[i].position) < 0,
      `${what}: position ${events[i - 1].position} comes before ${events[i].position}`)
  }
}

/**
 * The contract every `SseStore` must keep for channels to deliver exactly: what a store of your own (Postgres,
 * NATS, ...) must pass. `fastify-sse-h2`'s own stores pass it in its test suite.
 */
export const storeContract: readonly StoreContractCheck[] = [
  {
    name: 'append gives an event its position, its id and its frame',
    async run (subject) {
      await withStores(subject, 1, 100, async ([store]) => {
        const channel = subject.channelName()
        const given = eventToStore()
        const stored = await store.append(channel, given)
        assert.ok(isPosition(stored.position), `the position ${stored.position} is <n> or <n>-<n>`)
        assert.equal(stored.id, stored.position, 'without an id of its own, the id is the position')
        assert.equal(stored.frame, `id: ${stored.id}\n${given.body}`)
        const own = await append(store, channel, 'mine-1')
        assert.equal(own.id, 'mine-1', 'the publisher\'s id is kept')
        assert.equal(own.frame.startsWith('id: mine-1\n'), true)
        assert.ok(comparePositions(stored.position, own.position) < 0, 'positions increase')
      })
    }
  },
  {
    name: 'event is the snapshot with the id, read-only',
    async run (subject) {
      await withStores(subject, 1, 100, async ([store]) => {
        const channel = subject.channelName()
        const given = { id: 'snap-1', body: 'event: e\ndata: {"to":"ann"}\n\n', snapshot: '{"event":"e","data":{"to":"ann","tags":["a"]}}' }
        const stored = await store.append(channel, given)
        assert.deepEqual(stored.event, { event: 'e', data: { to: 'ann', tags: ['a'] }, id: 'snap-1' })
        assert.equal(Object.isFrozen(stored.event), true)
        assert.equal(Object.isFrozen((stored.event.data as { tags: string[] }).tags), true)
        const replay = await store.readAfter(channel, 'never-sent')
        assert.deepEqual(replay.events.map((event) => event.event), [stored.event], 'the same from a replay')
      })
    }
  },
  {
    name: 'positions increase within a channel, across stores, in the order the store took the events',
    async run (subject) {
      await withStores(subject, 2, 1000, async ([a, b]) => {
        const channel = subject.channelName()
        const appended = await Promise.all(Array.from({ length: 40 }, async (_, i) => await append(i % 2 === 0 ? a : b, channel)))
        const replay = await a.readAfter(channel, 'never-sent')
        assert.equal(replay.found, false)
        assertIncreasing(replay.events, 'the history')
        assert.deepEqual(new Set(positions(replay.events)), new Set(positions(appended)), 'every event, once')
      })
    }
  },
  {
    name: 'listeners in every store get every event of their channel, once, in the order of positions',
    async run (subject) {
      await withStores(subject, 3, 1000, async ([a, b, publisher]) => {
        const channel = subject.channelName()
        const other = subject.channelName()
        const onA = collect(a, channel, 30)
        const onB = collect(b, channel, 30)
        const onOther = collect(b, other, 1)
        // A channel is followed from the moment listen() returns: a store may need a moment to reach its backend.
        await new Promise((resolve) => setTimeout(resolve, 100))
        const appended: StoredEvent[] = []
        for (let i = 0; i < 30; i++) appended.push(await append(i % 3 === 0 ? a : publisher, channel))
        await append(publisher, other)
        try {
          for (const got of [await onA.all, await onB.all]) {
            assert.deepEqual(positions(got), positions(appended))
            assert.deepEqual(got.map((event) => event.frame), appended.map((event) => event.frame))
          }
          assert.equal((await onOther.all).length, 1, 'channels are apart')
        } finally {
          onA.stop()
          onB.stop()
          onOther.stop()
        }
      })
    }
  },
  {
    name: 'unlisten stops a listener; the others go on',
    async run (subject) {
      await withStores(subject, 1, 100, async ([store]) => {
        const channel = subject.channelName()
        const stopped: StoredEvent[] = []
        const listener = (event: StoredEvent): void => { stopped.push(event) }
        store.listen(channel, listener)
        const goesOn = collect(store, channel, 2)
        await new Promise((resolve) => setTimeout(resolve, 100))
        await append(store, channel)
        await new Promise((resolve) => setTimeout(resolve, 100))
        store.unlisten(channel, listener)
        store.unlisten('never-listened', listener)
        await append(store, channel)
        await goesOn.all
        goesOn.stop()
        assert.equal(stopped.length, 1)
      })
    }
  },
  {
    name: 'readAfter: the events after a retained id, with its position; all that is retained for any other',
    async run (subject) {
      await withStores(subject, 2, 100, async ([a, b]) => {
        const channel = subject.channelName()
        const first = await append(a, channel)
        const own = await append(a, channel, 'own-id')
        const last = await append(a, channel)
        for (const store of [a, b]) {
          assert.deepEqual(plainReplay(await store.readAfter(channel, first.id)),
            plainReplay({ found: true, position: first.position, events: [own, last] }))
          assert.deepEqual(plainReplay(await store.readAfter(channel, 'own-id')), plainReplay({ found: true, position: own.position, events: [last] }))
          assert.deepEqual(plainReplay(await store.readAfter(channel, last.id)), plainReplay({ found: true, position: last.position, events: [] }))
          for (const unknown of ['never-sent', `${first.id}0`, ` ${first.id}`, '']) {
            assert.deepEqual(plainReplay(await store.readAfter(channel, unknown)), plainReplay({ found: false, events: [first, own, last] }),
              `'${unknown}' is not a retained id`)
          }
        }
        assert.deepEqual(plainReplay(await a.readAfter(subject.channelName(), first.id)), { found: false, events: [] },
          'another channel has its own history')
        const again = await append(a, channel, 'own-id')
        assert.deepEqual(plainReplay(await b.readAfter(channel, 'own-id')), plainReplay({ found: true, position: again.position, events: [] }),
          'a repeated id stands for its newest event')
      })
    }
  },
  {
    name: 'readAfterPosition (if the store has it): the events after a retained position, whatever the ids',
    async run (subject) {
      await withStores(subject, 2, 100, async ([a, b]) => {
        // Optional: a store without it is asked readAfter() with the position instead.
        if (a.readAfterPosition === undefined) return
        const channel = subject.channelName()
        const first = await append(a, channel)
        const own = await append(a, channel, 'own-id')
        const last = await append(a, channel)
        for (const store of [a, b]) {
          const after = async (position: string): Promise<object> => plainReplay(await (store.readAfterPosition as
            NonNullable<SseStore['readAfterPosition']>)(channel, position))
          assert.deepEqual(await after(first.position), plainReplay({ found: true, position: first.position, events: [own, last] }))
          assert.deepEqual(await after(own.position), plainReplay({ found: true, position: own.position, events: [last] }),
            'the position of an event with an id of its own')
          assert.deepEqual(await after(last.position), plainReplay({ found: true, position: last.position, events: [] }))
          // Positions of no event: before them all, and after them.
          const later = last.position.replace(/^\d+/, (major) => String(Number(major) + 1000))
          for (const unknown of ['0', later]) {
            assert.deepEqual(await after(unknown), plainReplay({ found: false, events: [first, own, last] }), `${unknown} is no retained position`)
          }
        }
      })
    }
  },
  {
    name: 'head (if the store has it): the position of the newest event, from every store; undefined for a channel without one',
    async run (subject) {
      await withStores(subject, 2, 100, async ([a, b]) => {
        // Optional: a store without it is asked readAfter() with an id no event has, and its newest event says.
        if (a.head === undefined) return
        const channel = subject.channelName()
        const head = async (store: SseStore, name: string): Promise<string | undefined> =>
          await (store.head as NonNullable<SseStore['head']>).call(store, name)
        assert.equal(await head(a, channel), undefined, 'a channel that never published has none')
        await append(a, channel)
        const own = await append(b, channel, 'own-id')
        for (const store of [a, b]) {
          const newest = await head(store, channel)
          assert.ok(newest !== undefined && comparePositions(newest, own.position) === 0, `the newest event's position (${String(newest)})`)
        }
        assert.equal(await head(a, subject.channelName()), undefined, 'another channel has its own')
        // A subscriber is owed what is published after it asked: the answer is where the channel stood then.
        const asked = head(a, channel)
        const after = await append(a, channel)
        const answered = await asked
        assert.ok(answered !== undefined && comparePositions(answered, after.position) < 0,
          `as of when it was asked (${String(answered)}): an append made after it comes after it (${after.position})`)
      })
    }
  },
  {
    name: 'history keeps the newest events, at least historySize of them',
    async run (subject) {
      await withStores(subject, 1, 5, async ([store]) => {
        const channel = subject.channelName()
        const appended: StoredEvent[] = []
        for (let i = 0; i < 200; i++) appended.push(await append(store, channel))
        const { found, events } = await store.readAfter(channel, 'never-sent')
        assert.equal(found, false)
        assert.ok(events.length >= 5, `at least historySize (got ${events.length})`)
        if (subject.approximateHistory !== true) assert.equal(events.length, 5)
        assert.ok(events.length < 200, 'older events are let go')
        assert.deepEqual(positions(events), positions(appended.slice(-events.length)), 'the newest ones, oldest first')
        const oldest = await store.readAfter(channel, appended[0].id)
        assert.equal(oldest.found, false, 'an evicted id is not found')
      })
    }
  },
  {
    name: 'control (if the store has it): a message reaches every member, in each sender\'s order, and each answer comes back',
    async run (subject) {
      await withStores(subject, 2, 100, async ([a, b]) => {
        // Optional: a store without it steers the streams of its own process only.
        if (a.control === undefined) return
        const got: Record<string, unknown[]> = { a: [], a2: [], b: [] }
        const handler = (name: string) => (message: ControlMessage): unknown => {
          got[name].push(message)
          // One answers later than the others.
          return name === 'b' ? new Promise((resolve) => setTimeout(resolve, 20, { name, n: message.n })) : { name, n: message.n }
        }
        const members = await withMembers([[a, handler('a')], [a, handler('a2')], [b, handler('b')]], async ([one, two, three]) => {
          assert.equal(new Set([one.id, two.id, three.id]).size, 3, 'each member has an id of its own')
          const result = await one.send({ n: 1, text: 'to all' }, 5000)
          assert.deepEqual(result.unanswered, [])
          assert.deepEqual(new Map([...result.answers].filter(([id]) => [one.id, two.id, three.id].includes(id))),
            new Map([[one.id, { name: 'a', n: 1 }], [two.id, { name: 'a2', n: 1 }], [three.id, { name: 'b', n: 1 }]]),
            'every member\'s answer, by its id, this one\'s included')
          // Sent at once, without waiting: each member gets them in the order they were sent.
          const sent = await Promise.all(Array.from({ length: 20 }, async (_, n) => await three.send({ n: n + 2 }, 5000)))
          assert.ok(sent.every((result) => result.unanswered.length === 0))
          for (const name of ['a', 'a2', 'b']) {
            assert.deepEqual(got[name].map((message) => (message as { n: number }).n),
              Array.from({ length: 21 }, (_, n) => n + 1), `member ${name} got every message once, in order`)
          }
          assert.deepEqual(got.b[0], { n: 1, text: 'to all' }, 'as it was sent')
        })
        assert.equal(members, 3)
      })
    }
  },
  {
    name: 'control (if the store has it): a member that does not answer is named after the bound; one that left is not waited for',
    async run (subject) {
      await withStores(subject, 2, 100, async ([a, b]) => {
        if (a.control === undefined) return
        let late!: Promise<void>
        const answersLate = async (): Promise<string> => { late = new Promise((resolve) => setTimeout(resolve, 600)); await late; return 'late' }
        await withMembers([[a, () => ({ ok: true })], [b, answersLate], [b, () => { throw new Error('no') }], [a, () => undefined]],
          async ([answers, silent, throws, nothing]) => {
            const started = Date.now()
            const result = await answers.send({ n: 1 }, 300)
            assert.ok(Date.now() - started >= 250, 'it waited for the bound')
            assert.deepEqual(result.unanswered.sort(), [silent.id, throws.id].sort(), 'named')
            assert.deepEqual(result.answers.get(answers.id), { ok: true })
            assert.equal(result.answers.get(nothing.id), null, 'an answer of nothing (undefined) is null, as JSON has it')
            // Its answer, later than the bound, changes nothing.
            await late
            await new Promise((resolve) => setTimeout(resolve, 100))
            assert.equal(result.answers.has(silent.id), false)
            await silent.leave()
            await throws.leave()
            const after = Date.now()
            const again = await answers.send({ n: 2 }, 5000)
            assert.deepEqual(again.unanswered, [], 'members that left are not waited for')
            assert.equal(again.answers.has(silent.id), false)
            assert.ok(Date.now() - after < 2500, 'nor for the bound')
          })
      })
    }
  },
  {
    name: 'control (if the store has it): sum() adds up the values every process reports, as they change',
    async run (subject) {
      await withStores(subject, 2, 100, async ([a, b]) => {
        if (a.control === undefined || b.control === undefined) return
        const name = subject.channelName()
        const sum = async (): Promise<number> => await (a.control as SseStoreControl).sum(name)
        const ofA = new Map([[name, 2], [subject.channelName(), 7]])
        const ofB = new Map([[name, 3]])
        const stopA = a.control.report(() => ofA)
        const stopB = b.control.report(() => ofB)
        try {
          await eventually(async () => await sum() === 5, 'the sum of both processes\' values (5)')
          ofB.set(name, 10)
          await eventually(async () => await sum() === 12, 'the sum once a value changed (12)')
          ofA.delete(name)
          await eventually(async () => await sum() === 10, 'the sum once a value is gone (10)')
          assert.equal(await b.control.sum(subject.channelName()), 0, 'a name no process reports: 0')
        } finally {
          stopA()
          stopB()
        }
        await eventually(async () => await sum() === 0, 'nothing, once neither reports')
      })
    }
  }
]

/** Resolves once `check()` is true, asking again every 50 ms; rejects with `what` after 5 s. */
async function eventually (check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  // How often it asks again depends on the store's timing (the memory store answers at once); the throw is reached
  // only by a store that breaks the contract.
  /* c8 ignore start */
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out after 5000 ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  /* c8 ignore stop */
}

/** Joins each [store, handler] as a member, runs `check`, then every member leaves; resolves to how many joined. */
async function withMembers (joins: Array<[SseStore, ControlHandler]>,
  check: (members: ControlMember[]) => Promise<void>): Promise<number> {
  const members: ControlMember[] = []
  try {
    for (const [store, handler] of joins) members.push(await (store.control as SseStoreControl).join(handler))
    await check(members)
  } finally {
    await Promise.all(members.map(async (member) => await member.leave()))
  }
  return members.length
}

function plain (event: StoredEvent): { id: string, position: string, frame: string } {
  return { id: event.id, position: event.position, frame: event.frame }
}

function plainReplay (replay: { found: boolean, position?: string, events: StoredEvent[] }): object {
  return replay.found
    ? { found: true, position: replay.position, events: replay.events.map(plain) }
    : { found: false, events: replay.events.map(plain) }
}
