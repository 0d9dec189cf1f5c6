import type { FastifyBaseLogger } from 'fastify'
import type { SseSerializer } from './types'
import type { SseStore } from './store'
import { Channel } from './channel'
import { FST_SSE_INVALID_CHANNEL } from './errors'
import { describe } from './framing'

/** `app.sse`: the channels of one plugin instance, by name, over one store. */
export class Channels {
  /** The store channels keep their history in. */
  readonly store: SseStore
  private readonly byName = new Map<string, Channel>()
  private readonly serializer: SseSerializer
  private readonly log: FastifyBaseLogger

  /** @internal */
  constructor (store: SseStore, serializer: SseSerializer, log: FastifyBaseLogger) {
    this.store = store
    this.serializer = serializer
    this.log = log
    store.attach?.(log)
  }

  /** The channel of that name, made on first use; the same object every time until it is closed. */
  channel (name: string): Channel {
    let channel = this.byName.get(name)
    if (channel === undefined || channel.closed) {
      if (typeof name !== 'string' || name === '') throw new FST_SSE_INVALID_CHANNEL(describe(name))
      channel = new Channel(name, this.store, this.serializer, this.log)
      this.byName.set(name, channel)
    }
    return channel
  }

  /** @internal Closes every channel and the store. */
  async close (): Promise<void> {
    await Promise.all(Array.from(this.byName.values(), async (channel) => await channel.close()))
    this.byName.clear()
    await this.store.close()
  }
}
