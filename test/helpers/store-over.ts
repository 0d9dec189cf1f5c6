import type { MemoryStore } from '../../lib/stores/memory-store'
import type { SseStore } from '../../lib/stores/store'

/**
 * A store of one's own over a memory store: its five methods, without the optional ones (a store that predates
 * head() and readAfterPosition), and `own` in place of or beside them.
 */
export function storeOver (inner: MemoryStore, own: Partial<SseStore>): SseStore {
  return {
    append: (channel, event) => inner.append(channel, event),
    readAfter: (channel, lastEventId) => inner.readAfter(channel, lastEventId),
    listen: (channel, listener) => inner.listen(channel, listener),
    unlisten: (channel, listener) => inner.unlisten(channel, listener),
    close: () => inner.close(),
    ...own
  }
}

/** `answer()`'s result, on a later turn of the event loop: as a store over a network answers. */
export async function onALaterTurn<T> (answer: () => T): Promise<T> {
  return await new Promise((resolve, reject) => setImmediate(() => {
    try {
      resolve(answer())
    } catch (error) {
      reject(error)
    }
  }))
}

/**
 * A memory store whose reads answer on a later turn (head() too, unless `head: false`: then it has none), while it
 * appends and hands events to its listeners at once.
 */
export function laterStore (inner: MemoryStore, { head = true }: { head?: boolean } = {}): SseStore {
  return storeOver(inner, {
    readAfter: async (channel, lastEventId) => await onALaterTurn(() => inner.readAfter(channel, lastEventId)),
    readAfterPosition: async (channel, position) => await onALaterTurn(() => inner.readAfterPosition(channel, position)),
    ...(head ? { head: async (channel: string) => await onALaterTurn(() => newest(inner, channel)) } : {})
  })
}

/** The position of the channel's newest retained event, read as a store of one's own might. */
function newest (inner: MemoryStore, channel: string): string | undefined {
  return inner.readAfter(channel, '\n').events.at(-1)?.position
}
