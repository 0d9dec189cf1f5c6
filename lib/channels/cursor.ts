import type { Subscription } from './subscription'
import { FST_SSE_CURSOR_ID } from '../core/errors'
import { describe } from '../protocol/framing'

// The id of every event of a stream of several channels is a cursor: for each channel of the stream, the position
// of the last of its events the stream wrote (or its filter skipped), so that one Last-Event-ID resumes all of them.
// Positions are the store's, the same in every process: a cursor written by one instance resumes on another.
//
//   ~ <salt> <base> { . <key> [ <delta> [ _ <minor> ] ] }
//
// Numbers are base 36 (0-9a-z). <key>: 6 characters, a hash of the channel's name started from <salt> (one digit);
// <delta>: the first number of the position minus <base> ('-' before it when negative), so that the positions of
// one stream, which are close (a counter, or Redis's milliseconds), cost a few characters each; <minor>: the second
// number (`<ms>-<seq>`), when not 0. A key alone: the channel had no position yet (it had published nothing).
// Every character is one that a header and a URL carry as it is (encodeURIComponent leaves `~`, `.`, `_`, `-`).
// About 10 characters a channel: 50 channels take about 500.

/** The most channels one stream may carry: the cursor of that many stays under MAX_CURSOR_LENGTH. */
export const MAX_CURSOR_CHANNELS = 128
/** The longest cursor: 128 entries of the longest kind (30 characters) and the head. */
export const MAX_CURSOR_LENGTH = 4096

const MARK = '~'
const KEY_LENGTH = 6
const KEY_SPACE = 36 ** KEY_LENGTH
const SALTS = 36
const KEY = /^[0-9a-z]{6}$/
const NUMBER = /^[0-9a-z]{1,11}$/
const DELTA = /^(-?)([0-9a-z]{1,11})(?:_([0-9a-z]{1,11}))?$/
// Two entries of one key in a cursor we did not write: neither channel can tell which is its own.
const AMBIGUOUS = null

/**
 * Where a new subscription starts: now (undefined), after the event of an id (a stream of one channel), or after a
 * position of the client's cursor (undefined: before every event the channel retains).
 */
export type ResumeFrom = { id: string } | { position: string | undefined } | undefined

interface ReceivedCursor {
  salt: number
  positions: Map<string, string | undefined | typeof AMBIGUOUS>
}

/** Whether `text` is a cursor as streams of several channels write them. */
export function isCursor (text: string): boolean {
  return parseCursor(text) !== undefined
}

/**
 * The cursor of one stream: what the client came back with, which its subscriptions resume from, each once; and the
 * ids of what the stream writes, built from its subscriptions' positions. The entries of the client's cursor that no
 * subscription has taken are written on as they came (while the salt is the client's), so that a channel the
 * handler subscribes to later (after a lookup, a POST) still resumes after a reconnect in between.
 */
export class StreamCursor {
  private readonly received: ReceivedCursor | undefined
  private salt: number
  private base: number | undefined
  // Bumped when the salt changes: the segments subscriptions keep are then stale.
  private generation = 0
  // The entries of the client's cursor written on, made when first needed.
  private carried: string | undefined
  // Set by prepare(): the cursor's text around the segment of the subscription whose events are written.
  private before = ''
  private after = ''

  constructor (lastEventId: string | undefined) {
    this.received = lastEventId === undefined ? undefined : parseCursor(lastEventId)
    this.salt = this.received?.salt ?? 0
  }

  /** Whether the client came back with a cursor. */
  get resumes (): boolean {
    return this.received !== undefined
  }

  /** Where a new subscription to the channel named `name` starts: after its position in the client's cursor, or now. */
  resumeOf (name: string): ResumeFrom {
    const received = this.received
    if (received === undefined) return undefined
    const key = channelKey(name, received.salt)
    if (!received.positions.has(key)) return undefined
    const position = received.positions.get(key)
    // Once: a channel subscribed to again later on the same stream starts from then.
    received.positions.delete(key)
    this.carried = undefined
    return position === AMBIGUOUS ? undefined : { position }
  }

  /** Gives a subscription of the stream its key; when two keys meet, a salt that keeps them all apart. */
  add (subscription: Subscription, subscriptions: readonly Subscription[]): void {
    subscription.cursorKey = channelKey(subscription.channel.name, this.salt)
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
   * cursor is built once, at the position of each.
   */
  prepare (subscription: Subscription, subscriptions: readonly Subscription[], position: string | undefined): void {
    this.base ??= this.lowestMajor(subscriptions, position)
    let before = MARK + this.salt.toString(36) + this.base.toString(36)
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

  private lowestMajor (subscriptions: readonly Subscription[], position: string | undefined): number {
    let lowest = position === undefined ? Infinity : majorOf(position)
    for (const subscription of subscriptions) {
      const other = subscription.cursorPosition
      if (other !== undefined) lowest = Math.min(lowest, majorOf(other))
    }
    for (const other of this.received?.positions.values() ?? []) {
      if (typeof other === 'string') lowest = Math.min(lowest, majorOf(other))
    }
    return lowest === Infinity ? 0 : lowest
  }

  private segment (key: string, position: string | undefined): string {
    if (position === undefined) return '.' + key
    const dash = position.indexOf('-')
    const delta = Number(dash === -1 ? position : position.slice(0, dash)) - (this.base as number)
    let text = '.' + key + (delta < 0 ? '-' + (-delta).toString(36) : delta.toString(36))
    const minor = dash === -1 ? 0 : Number(position.slice(dash + 1))
    if (minor !== 0) text += '_' + minor.toString(36)
    return text
  }
}

/** Throws for an event of the stream's own with an id: on a stream of several channels, the ids are the cursor's. */
export function refuseOwnId (message: unknown): void {
  const id = typeof message === 'object' && message !== null ? (message as { id?: unknown }).id : undefined
  if (id !== undefined) throw new FST_SSE_CURSOR_ID(describe(id))
}

/**
 * The key of a channel in cursors: FNV-1a of its name, started from the salt, in 6 base-36 digits. The same in every
 * process and version: cursors in flight depend on it. Two names of one stream share a key about once in 10^9
 * (the salt then changes); a channel that joins a stream on resume shares one with an entry of the client's cursor
 * about as rarely, and would resume from that entry.
 */
export function channelKey (name: string, salt: number): string {
  let hash = Math.imul(0x811c9dc5 ^ salt, 0x01000193)
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193)
  return ((hash >>> 0) % KEY_SPACE).toString(36).padStart(KEY_LENGTH, '0')
}

function majorOf (position: string): number {
  const dash = position.indexOf('-')
  return Number(dash === -1 ? position : position.slice(0, dash))
}

/** The positions of a cursor, by key; undefined if `text` is not a cursor we could have written. */
function parseCursor (text: string): ReceivedCursor | undefined {
  if (text.length > MAX_CURSOR_LENGTH || text[0] !== MARK) return undefined
  const entries = text.split('.')
  if (entries.length - 1 > MAX_CURSOR_CHANNELS) return undefined
  const head = entries[0]
  const salt = wholeNumber(head.slice(1, 2))
  const base = wholeNumber(head.slice(2))
  if (salt === undefined || base === undefined) return undefined
  const positions: ReceivedCursor['positions'] = new Map()
  for (let i = 1; i < entries.length; i++) {
    const entry = entries[i]
    const key = entry.slice(0, KEY_LENGTH)
    if (!KEY.test(key)) return undefined
    let position: string | undefined
    if (entry.length > KEY_LENGTH) {
      position = positionOf(entry.slice(KEY_LENGTH), base)
      if (position === undefined) return undefined
    }
    positions.set(key, positions.has(key) ? AMBIGUOUS : position)
  }
  return { salt, positions }
}

function positionOf (text: string, base: number): string | undefined {
  const match = DELTA.exec(text)
  if (match === null) return undefined
  const delta = wholeNumber(match[2]) as number
  const major = match[1] === '-' ? base - delta : base + delta
  const minor = match[3] === undefined ? 0 : wholeNumber(match[3])
  if (!Number.isSafeInteger(major) || major < 0 || minor === undefined) return undefined
  return minor === 0 ? String(major) : `${major}-${minor}`
}

function wholeNumber (text: string): number | undefined {
  if (!NUMBER.test(text)) return undefined
  const value = parseInt(text, 36)
  return Number.isSafeInteger(value) ? value : undefined
}
