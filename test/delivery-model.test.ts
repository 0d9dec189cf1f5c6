import { test } from 'tap'
import fc from 'fast-check'
import { MemoryStore } from '../lib/memory-store'
import { commands, runInterleaving, tally, type ModelOptions } from './helpers/delivery-model'

// FC_SEED (and FC_PATH) replay a failing case: fast-check prints both when a property fails.
const seed = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED)
const path = process.env.FC_PATH
const numRuns = Number(process.env.FC_RUNS ?? 1000)

test('memory store: every connection gets exactly what the model says, whatever the interleaving', async (t) => {
  const options: ModelOptions = {
    history: 10,
    maxBufferedBytes: 300,
    makeStore: () => new MemoryStore({ historySize: 10, historyMaxAge: 0 }),
    ownSendsOrdered: true
  }
  await fc.assert(fc.asyncProperty(commands, async (steps) => await runInterleaving(options, steps)),
    { numRuns, seed, path })
  t.pass(`${numRuns} interleavings: ${JSON.stringify(tally)}`)
})
