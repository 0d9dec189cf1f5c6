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
 * A memory store whose reads answer on a later turn (head() too, unless `head: false`: then it has none), as of when
 * they were asked, as a store over one connection does (what this process appends after a read comes after it); it
 * appends and hands events to its listeners at once.
 */
export function laterStore (inner: MemoryStore, { head = true }: { head?: boolean } = {}): SseStore {
  return storeOver(inner, {
    readAfter: async (channel, lastEventId) => {
      const replay = inner.readAfter(channel, lastEventId)
      return await onALaterTurn(() => replay)
    },
    readAfterPosition: async (channel, position) => {
      const replay = inner.readAfterPosition(channel, position)
      return await onALaterTurn(() => replay)
    },
    // As of when it is asked (a publish made after it comes after it), answered later: as a store over one connection.
    ...(head
      ? {
          head: async (channel: string) => {
            const position = newest(inner, channel)
            return await onALaterTurn(() => position)
          }
        }
      : {})
  })
}

/** The position of the channel's newest retained event, read as a store of one's own might. */
function newest (inner: MemoryStore, channel: string): string | undefined {
  return inner.readAfter(channel, '\n').events.at(-1)?.position
}
