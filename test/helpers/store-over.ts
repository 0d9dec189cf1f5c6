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
