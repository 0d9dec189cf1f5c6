import type { Subscription } from './subscription'
import { FST_SSE_CURSOR_ID } from '../core/errors'
import { describe } from '../core/describe'
import {
  AMBIGUOUS, MAX_CURSOR_CHANNELS, SALTS, channelKey, cursorEntry, cursorHead, majorOf, parseCursor, type ReceivedCursor
} from '../protocol/cursor-encoding'

// A stream of several channels writes a cursor as the id of each event (see protocol/cursor-encoding.ts).

/**
 * Where a new subscription starts: now (undefined), after the event of an id (a stream of one channel), or after a
 * position of the client's cursor (undefined: the channel retained nothing then, so all it retains is new).
 */
export type ResumeFrom = { id: string } | { position: string | undefined } | undefined

/** An id no event has (ids never hold a line feed): a replay after it is `missed`, then all that is retained. */
export const NO_EVENT_ID = '\n'
// Where a client that came back with an id its stream cannot read stood on a channel: not known, so it is told.
const UNKNOWN: ResumeFrom = { id: NO_EVENT_ID }

/**
 * The cursor of one stream: what the client came back with, which its subscriptions resume from, each once; and the
 * ids of what the stream writes, built from its subscriptions' positions. The entries of the client's cursor that no
 * subscription has taken are written on as they came (while the salt is the client's), so that a channel the
 * handler subscribes to later (after a lookup, a POST) still resumes after a reconnect in between.
 */
export class StreamCursor {
  private readonly received: ReceivedCursor | undefined
  // The client came back with an id that is not a whole cursor (a plain id, a cut cursor): a channel it does not
  // place cannot be told where it stood, and gets `missed`.
  private readonly unread: boolean
  // The channels that took their start from what the client came with: each once.
  private readonly taken = new Set<string>()
  private salt: number
  // The first number of the lowest position the cursor holds: a function of where the stream stands, so that two
  // streams that stand at the same positions write the same cursor (and share their frames: cursor-frames.ts).
  private base: number | undefined
  // Bumped when the salt or the base changes: the segments subscriptions keep are then stale.
  private generation = 0
  // The entries of the client's cursor written on, made when first needed.
  private carried: string | undefined
  // Set by prepare(): the cursor's text around the segment of the subscription whose events are written.
  private before = ''
  private after = ''

  constructor (lastEventId: string | undefined) {
    this.received = lastEventId === undefined ? undefined : parseCursor(lastEventId)
    this.salt = this.received?.salt ?? 0
    this.unread = lastEventId !== undefined && this.received?.complete !== true
  }

  /** Whether the client came back with a cursor, whole. */
  get resumes (): boolean {
    return this.received?.complete === true
  }

  /**
   * Where a new subscription to the channel named `name` starts: after its position in the client's cursor; now, if
   * the cursor is whole and the channel is not in it (it was not on the stream then); after an id no event has (a
   * `missed`), if the client came back with an id that does not say (a plain id, a cut cursor, an entry given twice).
   */
  resumeOf (name: string): ResumeFrom {
    // Once: a channel subscribed to again later on the same stream starts from then.
    if (this.taken.has(name)) return undefined
    this.taken.add(name)
    const received = this.received
    const key = received === undefined ? '' : channelKey(name, received.salt)
    if (received === undefined || !received.positions.has(key)) return this.unread ? UNKNOWN : undefined
    const position = received.positions.get(key)
    received.positions.delete(key)
    this.carried = undefined
    return position === AMBIGUOUS ? UNKNOWN : { position }
  }

  /** Gives a subscription of the stream its key; when two keys meet, a salt that keeps them all apart. */
  add (subscription: Subscription, subscriptions: readonly Subscription[]): void {
    // A stream of one channel that takes more: its channel took the client's id already, and writes its own entry
    // from now on, never the client's one of it (two entries of a channel are read as neither).
    const name = subscription.channel.name
    this.taken.add(name)
    this.received?.positions.delete(channelKey(name, this.received.salt))
    subscription.cursorKey = channelKey(name, this.salt)
    this.carried = undefined
    if (!subscriptions.some((other) => other !== subscription && other.cursorKey === subscription.cursorKey)) return
    for (let salt = 0; salt < SALTS; salt++) {
      const keys = new Set(subscriptions.map((other) => channelKey(other.channel.name, salt)))
      if (keys.size < subscriptions.length) continue
      this.salt = salt
      this.generation++
      for (const other of subscriptions) other.cursorKey = channelKey(other.channel.name, salt)
      return
    }
    /* c8 ignore next: 128 names whose keys meet under each of 36 salts: a chance of about 1 in 10^140 */
  }

  /**
   * Readies idOf() for the events of `subscription` (the first at `position`): the other subscriptions' part of the
   * cursor is built once, at the position of each, from the base of the lowest position among them and `position`.
   */
  prepare (subscription: Subscription, subscriptions: readonly Subscription[], position: string | undefined): void {
    const base = this.lowestMajor(subscription, subscriptions, position)
    if (base !== this.base) {
      this.base = base
      this.generation++
      this.carried = undefined
    }
    let before = cursorHead(this.salt, this.base)
    let after = ''
    let passed = false
    for (const other of subscriptions) {
      if (other === subscription) {
        passed = true
      } else if (passed) {
        after += this.segmentOf(other)
      } else {
        before += this.segmentOf(other)
      }
    }
    this.before = before
    this.after = after + this.carriedEntries(subscriptions.length)
  }

  /**
   * Whether its frames may be those of another stream at the same place (cursor-frames.ts): not when it writes on
   * entries of its client's cursor, which are its own.
   */
  get sharesFrames (): boolean {
    const received = this.received
    if (received === undefined || received.salt !== this.salt) return true
    for (const position of received.positions.values()) if (position !== AMBIGUOUS) return false
    return true
  }

  /** The salt its channels' keys are made with. */
  get keySalt (): number {
    return this.salt
  }

  /** The cursor after an event of the prepared subscription at `position` (undefined: it has none). */
  idOf (subscription: Subscription, position: string | undefined): string {
    return this.before + this.segment(subscription.cursorKey, position) + this.after
  }

  private segmentOf (subscription: Subscription): string {
    const position = subscription.cursorPosition
    if (subscription.segmentGeneration !== this.generation || subscription.segmentPosition !== position) {
      subscription.segment = this.segment(subscription.cursorKey, position)
      subscription.segmentPosition = position
      subscription.segmentGeneration = this.generation
    }
    return subscription.segment
  }

  /** The client's entries no subscription took, as many as fit with the stream's own; none under another salt. */
  private carriedEntries (subscriptions: number): string {
    if (this.carried !== undefined) return this.carried
    let text = ''
    const received = this.received
    if (received !== undefined && received.salt === this.salt) {
      let room = MAX_CURSOR_CHANNELS - subscriptions
      for (const [key, position] of received.positions) {
        if (room-- <= 0) break
        if (position !== AMBIGUOUS) text += this.segment(key, position)
      }
    }
    this.carried = text
    return text
  }

  /**
   * Where the stream stands that everyone at the same place shares: the other subscriptions' positions, what it writes
   * on of its client's cursor, and `position`, the first it writes of `subscription` (its own earlier position is not
   * in the cursor any more).
   */
  private lowestMajor (subscription: Subscription, subscriptions: readonly Subscription[], position: string | undefined): number {
    let lowest = position === undefined ? Infinity : majorOf(position)
    for (const other of subscriptions) {
      const at = other === subscription ? undefined : other.cursorPosition
      if (at !== undefined) lowest = Math.min(lowest, majorOf(at))
    }
    for (const other of this.received?.positions.values() ?? []) {
      if (typeof other === 'string') lowest = Math.min(lowest, majorOf(other))
    }
    return lowest === Infinity ? 0 : lowest
  }

  private segment (key: string, position: string | undefined): string {
    return cursorEntry(key, position, this.base as number)
  }
}

/** Throws for an event of the stream's own with an id: on a stream of several channels, the ids are the cursor's. */
export function refuseOwnId (message: unknown): void {
  const id = typeof message === 'object' && message !== null ? (message as { id?: unknown }).id : undefined
  if (id !== undefined) throw new FST_SSE_CURSOR_ID(describe(id))
}
