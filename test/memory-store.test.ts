import { test } from 'tap'
import { MemoryStore } from '../index'
import type { StoredEvent } from '../index'

function add (store: MemoryStore, id?: string): StoredEvent {
  return store.append('c', { id, body: 'data: x\n\n', snapshot: '{"data":"x"}' })
}

test('store-given ids are consecutive and increasing; frames carry them', async (t) => {
  const store = new MemoryStore()
  const first = add(store)
  const second = add(store)
  t.equal(BigInt(second.id) - BigInt(first.id), 1n)
  t.ok(Number(first.id) >= Date.now() * 1000 - 60_000_000, 'they start from the process start time, in µs')
  t.equal(first.frame, `id: ${first.id}\ndata: x\n\n`)
})

test('readAfter finds store-given and publisher-given ids, and only the exact text', async (t) => {
  const store = new MemoryStore({ historySize: 5 })
  const a = add(store)
  const own = add(store, 'own-1')
  const b = add(store)
  const ids = (events: StoredEvent[]): string[] => events.map((event) => event.id)
  t.same(store.readAfter('c', a.id), { found: true, position: a.position, events: [own, b] })
  t.same(ids(store.readAfter('c', 'own-1').events), [b.id])
  // The slot of 'own-1' has a number too, but that number was never sent as an id.
  const ownSlot = String(BigInt(a.id) + 1n)
  t.same(store.readAfter('c', ownSlot), { found: false, events: [a, own, b] })
  for (const almost of [`${a.id}.0`, ` ${a.id}`, '1e3', String(BigInt(b.id) + 1n), '-1', '']) {
    t.equal(store.readAfter('c', almost).found, false, `'${almost}' is not a retained id`)
  }
  t.same(store.readAfter('other', a.id), { found: false, events: [] }, 'another channel has its own history')
})

test('the ring keeps the last historySize events and forgets the evicted publisher ids', async (t) => {
  const store = new MemoryStore({ historySize: 2 })
  add(store, 'first')
  add(store, 'second')
  const third = add(store)
  t.same(store.readAfter('c', 'second'), { found: true, position: String(BigInt(third.position) - 1n), events: [third] })
  t.equal(store.readAfter('c', 'first').found, false, 'evicted')
  add(store, 'second')
  t.equal(store.readAfter('c', 'second').events.length, 0, 'a repeated id points at its newest event')
})

test('listeners get each appended event; unlisten stops them; close forgets everything', async (t) => {
  const store = new MemoryStore()
  const got: string[] = []
  const listener = (event: StoredEvent): void => { got.push(event.id) }
  store.listen('c', listener)
  const one = add(store, 'one')
  store.unlisten('c', listener)
  store.unlisten('never-listened', listener)
  add(store, 'two')
  t.same(got, [one.id])
  store.close()
  t.equal(store.readAfter('c', 'one').found, false)
})

test('head(): at once, the newest retained event\'s position; none for a channel that retains none', async (t) => {
  t.equal(new MemoryStore().head('c'), undefined, 'never published')
  const store = new MemoryStore({ historySize: 2, historyMaxAge: 60_000 })
  add(store)
  const newest = add(store, 'own')
  t.equal(store.head('c'), newest.position, 'its position, whatever its id')
  const now = Date.now()
  t.capture(Date, 'now', () => now + 60_001)
  t.equal(store.head('c'), undefined, 'all expired: none retained')
  const none = new MemoryStore({ historySize: 0 })
  none.append('c', { id: undefined, body: 'data: x\n\n', snapshot: '{"data":"x"}' })
  t.equal(none.head('c'), undefined, 'historySize 0: none retained')
})
