import { t as root, test } from 'tap'
import { connectSession, openStream, type SseClient } from './helpers/client'
import { startRedis } from './helpers/redis'
import { startInstance } from './helpers/redis-instances'
import { missingService, mustSkip } from './helpers/services'
import { waitUntil } from './helpers/wait'
import { comparePositions } from '../lib/core/position'

// Two instance processes and 2,000 streams: on a loaded 2-core machine this file may take longer than tap's 120 s.
root.setTimeout(300_000)

const CLIENTS = 2000
const RETAINED = 1000

// An instance closes (or dies) and its clients come back to another one all at once, each with its Last-Event-ID,
// while the app goes on publishing: every one must resume exactly, and publishing must not stall behind the replays.
test(`a reconnect storm: ${CLIENTS} clients at once, ${RETAINED} events retained, publishing going on`, {
  skip: mustSkip(missingService('redis-server'))
}, async (t) => {
  const redis = await startRedis(t)
  // Room for what is published during the storm: the ids the clients come back with stay retained.
  // commandTimeout: a bound for a publish on a 2-core machine the storm and other suites share, not a timing claim.
  const store = { historySize: 2 * RETAINED, commandTimeout: 10_000 }
  const [a, b] = await Promise.all([0, 1].map(async () => await startInstance(t, { protocol: 'h2c', redis: redis.url, store })))
  const history: string[] = []
  for (let i = 0; i < RETAINED; i += 100) {
    history.push(...await a.publish('storm', Array.from({ length: 100 }, (_, j) => String(i + j))))
  }
  // Half had all seen the same recent event (they were keeping up); the others come from anywhere in the history.
  const lastIds = Array.from({ length: CLIENTS }, (_, i) => i % 2 === 0 ? history[RETAINED - 10] : history[(i * 37) % RETAINED])
  const sessions = await Promise.all(Array.from({ length: 20 }, async () => await connectSession(t, b.server, { windowSize: 4 * 1024 * 1024 })))
  const publishing = Promise.all([a.steady('storm', 300, 100, 'a'), b.steady('storm', 60, 20, 'b')])
  const started = performance.now()
  const clients: SseClient[] = await Promise.all(lastIds.map(async (id, i) =>
    await openStream(t, b.server, '/channels/storm', { session: sessions[i % sessions.length], headers: { 'last-event-id': id }, timeoutMs: 60_000 })))
  const answeredMs = performance.now() - started
  const [fromA, fromB] = await publishing
  t.same([fromA.failures, fromB.failures], [[], []], 'every publish was taken during the storm, on both instances')
  const all = [...history, ...fromA.ids as string[], ...fromB.ids as string[]].sort(comparePositions)
  const newest = all[all.length - 1]
  await Promise.all(clients.map(async (client) =>
    await waitUntil(client, 'change', () => client.events.some((event) => event.id === newest) ? true : undefined, 'the newest event', 30_000)))
  const wrong = clients.filter((client, i) => {
    const owed = all.slice(all.indexOf(lastIds[i]) + 1)
    return client.events.map((event) => event.id).join() !== owed.join()
  })
  for (const client of wrong.slice(0, 3)) {
    const i = clients.indexOf(client)
    const owed = all.slice(all.indexOf(lastIds[i]) + 1)
    const got = client.events.map((event) => event.id as string)
    const firstDiff = got.findIndex((id, k) => id !== owed[k])
    t.comment(`client ${i} from ${all.indexOf(lastIds[i])}: got ${got.length} of ${owed.length}, first difference at ${firstDiff}: ` +
      `got ${got.slice(Math.max(0, firstDiff - 1), firstDiff + 3).map((id) => all.indexOf(id)).join(' ')}, ` +
      `owed ${owed.slice(Math.max(0, firstDiff - 1), firstDiff + 3).map((id) => all.indexOf(id)).join(' ')}`)
  }
  t.equal(wrong.length, 0, `all ${CLIENTS} resumed exactly: every event after their id, once, in order, then the live ones`)
  t.ok(clients.every((client) => client.status === 200), 'none was refused')
  t.comment(`${CLIENTS} streams answered within ${Math.round(answeredMs)} ms`)
})
