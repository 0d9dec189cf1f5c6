import type { StoredEvent, StoredEventListener } from '../store'
import type { ChannelEvent } from '../../core/events'
import type { Entry } from './scripts'
import { entryEvent, liveMessage, type LiveMessage } from './entry'
import { comparePositions } from '../../core/position'

/**
 * A pub/sub channel a live connection subscribes to on someone's behalf: a followed channel; control messages
 * between instances would be another.
 */
export interface LiveChannel {
  /** Its name in the app (in logs). */
  readonly channel: string
  /** The pub/sub channel's name, as Redis knows it (with the client's keyPrefix). */
  readonly liveName: string
  /** Its shard (its hash tag): on a Redis Cluster, the slot whose node it is subscribed on. */
  readonly shard: number
  /** A message published on it. */
  message: (text: string) => void
  /** Redis confirmed the subscription: every message from now on arrives; what came before must be read. */
  subscribed: () => void
  /** The subscription was lost (the connection dropped, the slot moved): messages are missed until subscribed(). */
  unsubscribed: () => void
  /** Redis refused the subscription (an ACL): no message comes. */
  subscriptionRefused: () => void
}

// Messages a follow keeps while it cannot apply them yet (a read on its way, where it starts not known yet); past
// this, they are let go of, and read from the stream instead: a Redis slow to answer reads costs no unbounded memory.
export const MAX_WAITING = 10_000

/** Where a follow asks for a read of what it missed; it answers with caughtUp() or refused(). */
export interface CatchUpQueue {
  request: (follow: Follow) => void
}

/**
 * A channel this process has listeners for. Its events come live, by pub/sub, each with the id of the entry before
 * it: one that does not follow the last one handed over is a gap, read from the stream (or `missed`, if it was
 * trimmed), and one at or before it was handed over already. After a subscribe (the first, or again after the
 * connection or the slot was lost) it reads on from the stream once, since messages published before the
 * subscription took effect never come; meanwhile messages wait, in order.
 */
export class Follow implements LiveChannel {
  readonly channel: string
  /** Its stream's key, as the store names it; `liveName` is the same with the client's keyPrefix. */
  readonly key: string
  readonly liveName: string
  readonly shard: number
  readonly listeners = new Set<StoredEventListener>()
  /** The last entry handed over, or the newest one when following began; undefined until the store knows it. */
  position: string | undefined
  /** When it last had a message, or the live check read on for it: the live check reads on a channel quiet for longer. */
  heardAt = Date.now()
  /** Redis refused to read its stream (said once): the live check tries again. */
  refused = false
  ended = false
  private readonly catchUps: CatchUpQueue
  private subscribedNow = false
  // Subscribed, and nothing to read first: messages are applied as they come.
  private live = false
  private catchingUp = false
  private catchUpAgain = false
  // Messages that came while it was not live, in order; `next` is the first not applied yet.
  private waiting: string[] = []
  private next = 0

  constructor (channel: string, key: string, liveName: string, shard: number, catchUps: CatchUpQueue) {
    this.channel = channel
    this.key = key
    this.liveName = liveName
    this.shard = shard
    this.catchUps = catchUps
  }

  get quiet (): boolean {
    return this.live && !this.catchingUp
  }

  message (text: string): void {
    this.heardAt = Date.now()
    if (this.live) this.apply(liveMessage(text))
    else if (this.waiting.length - this.next < MAX_WAITING) this.waiting.push(text)
    else {
      // The stream holds them: once where it starts is known, or after the read on its way, it reads on again.
      this.waiting = []
      this.next = 0
      this.catchUpAgain = this.catchingUp
    }
  }

  subscribed (): void {
    this.subscribedNow = true
    this.catchUp()
  }

  unsubscribed (): void {
    this.subscribedNow = false
    this.live = false
  }

  /** No message comes: it reads on once, then at each live check, as a quiet channel. */
  subscriptionRefused (): void {
    this.subscribed()
  }

  /** Where following begins: the channel's newest entry ('0-0': none), read once the channel was followed. */
  positioned (position: string): void {
    this.position = position
    this.catchUp()
  }

  /** Reads on from the stream: after a subscribe, on a gap, or when the live check finds it quiet. */
  catchUp (): void {
    if (this.position === undefined || !this.subscribedNow || this.ended) return
    this.live = false
    if (this.catchingUp) {
      this.catchUpAgain = true
      return
    }
    this.catchingUp = true
    this.catchUps.request(this)
  }

  /**
   * The entries after its position (a page of them when `more`); `missed`: entries after it were trimmed, and these
   * are the oldest retained.
   */
  caughtUp (entries: readonly Entry[], missed: boolean, more: boolean): void {
    this.catchingUp = false
    if (this.ended) return
    if (missed) this.deliver(new MissedEvent(this.channel, entries[0]))
    for (const [id, fields] of entries) {
      if (comparePositions(id, this.position as string) > 0) this.deliver(entryEvent(id, fields))
    }
    if (more || this.catchUpAgain) {
      this.catchUpAgain = false
      this.catchUp()
      return
    }
    this.live = this.subscribedNow
    this.drain()
  }

  /** Redis refused to read its stream: what comes live is handed over; the live check reads it again. */
  readRefused (): void {
    this.catchingUp = false
    this.catchUpAgain = false
    this.live = this.subscribedNow
    this.drain()
  }

  private drain (): void {
    while (this.live && this.next < this.waiting.length) this.apply(liveMessage(this.waiting[this.next++]))
    if (this.next === this.waiting.length) {
      this.waiting = []
      this.next = 0
    }
  }

  private apply (message: LiveMessage): void {
    const position = this.position as string
    if (comparePositions(message.id, position) <= 0) return
    // A gap: the stream holds what was missed, this message included.
    if (message.previous !== position) this.catchUp()
    else this.deliver(entryEvent(message.id, message.fields))
  }

  private deliver (event: StoredEvent): void {
    this.position = event.position
    for (const listener of this.listeners) listener(event)
  }
}

/**
 * What a follow hands over in place of the events it can no longer read (trimmed before it read them): the `missed`
 * event a replay would give (Subscription's missed frame: no id line, the channel and the oldest id retained), at the
 * position right before the oldest entry retained, which a subscriber that had everything before it skips.
 */
class MissedEvent implements StoredEvent {
  readonly id = ''
  readonly position: string
  readonly frame: string
  readonly missed = true
  readonly event: ChannelEvent

  constructor (channel: string, [oldest, fields]: Entry) {
    const oldestId = entryEvent(oldest, fields).id
    const data = { channel, oldestId }
    this.position = positionBefore(oldest)
    this.frame = 'event: missed\ndata: ' + JSON.stringify(data) + '\n\n'
    this.event = Object.freeze({ id: '', event: 'missed', data: Object.freeze(data) })
  }
}

/** The position right before a stream entry id: no entry id lies between them. */
export function positionBefore (id: string): string {
  const dash = id.indexOf('-')
  const ms = Number(id.slice(0, dash))
  const seq = Number(id.slice(dash + 1))
  return seq > 0 ? `${ms}-${seq - 1}` : `${ms - 1}-${Number.MAX_SAFE_INTEGER}`
}
