import { test, type Test } from 'tap'
import fc from 'fast-check'
import { MemoryStore } from '../lib/stores/memory-store'
import { RedisStore } from '../redis'
import { interleavings, runInterleaving, tally, type ModelOptions } from './helpers/delivery-model'
import { laterStore, storeOver } from './helpers/store-over'
import { startRedis } from './helpers/redis'
import { missingService, mustSkip } from './helpers/services'

// FC_SEED and FC_PATH replay a failing case (fast-check prints both when a property fails); FC_RUNS sets how many.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)
const path = process.env.FC_PATH
const runs = (fallback: number): number => Number(process.env.FC_RUNS ?? fallback)

async function holds (t: Test, options: ModelOptions, numRuns: number): Promise<void> {
  for (const key of Object.keys(tally)) delete tally[key]
  const started = Date.now()
  await fc.assert(fc.asyncProperty(interleavings, async (steps) => await runInterleaving(options, steps)), { numRuns, seed, path })
  t.pass(`${numRuns} interleavings in ${((Date.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(tally)}`)
}

const memory = (): MemoryStore => new MemoryStore({ historySize: 10, historyMaxAge: 0 })

test('memory store: every connection gets exactly what the model says, whatever the interleaving', async (t) => {
  await holds(t, { history: 10, maxBufferedBytes: 300, makeStores: () => [memory()], check: 'exact' }, runs(2000))
})

test('a memory store whose reads and head() answer on a later turn, under limits: exactly what the model says', async (t) => {
  await holds(t, {
    history: 10,
    maxBufferedBytes: 300,
    makeStores: () => [laterStore(memory())],
    check: 'exact',
    limits: { maxStreams: 4, maxStreamsPerAddress: 2 }
  }, runs(1000))
})

test('memory stores without head(), answering at once and on a later turn: exactly what the model says', async (t) => {
  for (const [kind, makeStore] of [
    ['at once', () => { const inner = memory(); return storeOver(inner, { readAfterPosition: (channel, position) => inner.readAfterPosition(channel, position) }) }],
    ['on a later turn', () => laterStore(memory(), { head: false })]
  ] as const) {
    await t.test(kind, async (t) => {
      await holds(t, { history: 10, maxBufferedBytes: 300, makeStores: () => [makeStore()], check: 'exact' }, runs(500))
    })
  }
})

test('redis store, two instances, under limits: every connection gets its events once, in order, without a gap', {
  skip: mustSkip(missingService('redis-server', 'apt-get install redis-server'))
}, async (t) => {
  const redis = await startRedis(t)
  let run = 0
  await holds(t, {
    history: 100_000,
    maxBufferedBytes: 300,
    makeStores: () => {
      // Each run its own keys, and each instance its own connections to the one Redis.
      const prefix = `model-${run++}:`
      return [0, 1].map(() => new RedisStore({ redis: redis.url, prefix, historySize: 100_000, historyMaxAge: 0 }))
    },
    check: 'positions',
    limits: { maxStreams: 4, maxStreamsPerAddress: 3 }
  }, runs(150))
})
