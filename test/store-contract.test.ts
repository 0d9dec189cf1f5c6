import { test, type Test } from 'tap'
import { MemoryStore } from '../index'
import { RedisStore } from '../redis'
import { storeContract } from '../store-contract'
import type { SseStore } from '../index'
import { startRedis } from './helpers/redis'
import { missingService, mustSkip } from './helpers/services'

let channels = 0
const channelName = (): string => `contract-${process.pid}-${channels++}`

test('MemoryStore keeps the store contract', async (t) => {
  await keepsContract(t, sharedView)
})

test('a store without readAfterPosition, head and control (which are optional) keeps the contract', async (t) => {
  await keepsContract(t, (store) => {
    const { readAfterPosition, head, control, ...view } = sharedView(store)
    return view
  })
})

/** Runs each check over views of one memory store, a new one for each check: as processes share one Redis. */
async function keepsContract (t: Test, view: (store: MemoryStore) => SseStore): Promise<void> {
  for (const check of storeContract) {
    let shared: MemoryStore | undefined
    await t.test(check.name, async () => {
      await check.run({
        channelName,
        makeStore: (historySize) => {
          shared ??= new MemoryStore({ historySize, historyMaxAge: 0 })
          return view(shared)
        }
      })
      shared = undefined
    })
  }
}

test('RedisStore keeps the store contract', { skip: mustSkip(missingService('redis-server', 'apt-get install redis-server')) }, async (t) => {
  const redis = await startRedis(t)
  for (const check of storeContract) {
    await t.test(check.name, async () => {
      await check.run({ channelName, approximateHistory: true, makeStore: (historySize) => new RedisStore({ redis: redis.url, historySize }) })
    })
  }
})

/** A view of one memory store whose close() leaves it to the others, with listeners of its own. */
function sharedView (store: MemoryStore): SseStore {
  return {
    append: (channel, event) => store.append(channel, event),
    readAfter: (channel, lastEventId) => store.readAfter(channel, lastEventId),
    readAfterPosition: (channel, position) => store.readAfterPosition(channel, position),
    head: (channel) => store.head(channel),
    listen: (channel, listener) => store.listen(channel, listener),
    unlisten: (channel, listener) => store.unlisten(channel, listener),
    control: store.control,
    close: () => {}
  }
}
