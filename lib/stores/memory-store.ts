import type { EventToStore, Replay, SseStore, StoredEvent, StoredEventListener } from './store'
import { SnapshotEvent } from '../protocol/snapshot'
import { MemoryControl } from './memory-control'
import { FST_SSE_INVALID_OPTION } from '../core/errors'
import { DEFAULT_HISTORY_MAX_AGE, DEFAULT_HISTORY_SIZE } from '../core/defaults'
import { describe } from '../core/describe'

export interface MemoryStoreOptions {
  /**
   * Most events each channel keeps for replay.
   * @default 1000
   */
  historySize?: number
  /**
   * Milliseconds an event stays available for replay. `0`: no age limit.
   * @default 300000 (5 minutes)
   */
  historyMaxAge?: number
}

class Entry extends SnapshotEvent {
  readonly seq: number
  readonly time: number

  constructor (id: string, seq: number, body: string, snapshot: string, time: number) {
    super(id, String(seq), body, snapshot)
    this.seq = seq
    this.time = time
  }
}

/**
 * The history of one channel: a ring of its last events. Positions are a sequence number that starts at the time its
 * store was made, in microseconds: they keep increasing across restarts, so an id from before a restart is never
 * mistaken for a newer event of the same number.
 */
class ChannelHistory {
  readonly listeners = new Set<StoredEventListener>()
  private readonly ring: Array<Entry | undefined>
  private head = 0
  private length = 0
  private nextSeq: number
  // Only publisher-given ids need a lookup table: positions are found by arithmetic.
  private readonly byOwnId = new Map<string, Entry>()

  constructor (size: number, firstSeq: number) {
    this.ring = new Array<Entry | undefined>(size)
    this.nextSeq = firstSeq
  }

  append (event: EventToStore, now: number): Entry {
    const seq = this.nextSeq++
    const entry = new Entry(event.id ?? String(seq), seq, event.body, event.snapshot, now)
    if (this.ring.length === 0) return entry
    if (this.length === this.ring.length) this.dropOldest()
    this.ring[(this.head + this.length) % this.ring.length] = entry
    this.length++
    if (event.id !== undefined) this.byOwnId.set(event.id, entry)
    return entry
  }

  after (lastEventId: string): Replay {
    return this.replayAfter(this.find(lastEventId))
  }

  afterPosition (position: string): Replay {
    // Positions are sequence numbers: found by arithmetic, and only the exact text this store gave matches.
    const entry = this.bySeq(Number(position))
    return this.replayAfter(entry?.position === position ? entry : undefined)
  }

  private replayAfter (found: Entry | undefined): Replay {
    const events: StoredEvent[] = []
    const first = found === undefined ? 0 : found.seq - this.at(0).seq + 1
    for (let i = first; i < this.length; i++) events.push(this.at(i))
    return found === undefined ? { found: false, events } : { found: true, position: found.position, events }
  }

  /** The position of the newest event retained, or undefined. */
  newest (): string | undefined {
    return this.length === 0 ? undefined : this.at(this.length - 1).position
  }

  expire (oldestTime: number): void {
    while (this.length > 0 && this.at(0).time < oldestTime) this.dropOldest()
  }

  private find (id: string): Entry | undefined {
    const own = this.byOwnId.get(id)
    if (own !== undefined) return own
    const entry = this.bySeq(Number(id))
    // Number('1e3') and Number(' 7') parse too: only the exact text we sent matches.
    return entry?.id === id ? entry : undefined
  }

  /** The entry of sequence number `seq`; undefined if it is not retained (or not a whole number). */
  private bySeq (seq: number): Entry | undefined {
    if (this.length === 0) return undefined
    const index = seq - this.at(0).seq
    return Number.isSafeInteger(index) && index >= 0 && index < this.length ? this.at(index) : undefined
  }

  private at (index: number): Entry {
    return this.ring[(this.head + index) % this.ring.length] as Entry
  }

  private dropOldest (): void {
    const entry = this.at(0)
    this.ring[this.head] = undefined
    this.head = (this.head + 1) % this.ring.length
    this.length--
    if (this.byOwnId.get(entry.id) === entry) this.byOwnId.delete(entry.id)
  }
}

/** The default store: history and positions in this process's memory, for one instance. */
export class MemoryStore implements SseStore {
  /** The plugin registrations given this store, in this process: steering reaches each of them. */
  readonly control = new MemoryControl()
  private readonly historySize: number
  private readonly historyMaxAge: number
  private readonly channels = new Map<string, ChannelHistory>()
  private readonly firstSeq = firstSequence()

  constructor (options: MemoryStoreOptions = {}) {
    this.historySize = options.historySize ?? DEFAULT_HISTORY_SIZE
    this.historyMaxAge = options.historyMaxAge ?? DEFAULT_HISTORY_MAX_AGE
    checkWhole('historySize', this.historySize)
    checkWhole('historyMaxAge', this.historyMaxAge)
  }

  append (channel: string, event: EventToStore): StoredEvent {
    const history = this.history(channel)
    const now = Date.now()
    this.expire(history, now)
    const entry = history.append(event, now)
    for (const listener of history.listeners) listener(entry)
    return entry
  }

  readAfter (channel: string, lastEventId: string): Replay {
    const history = this.history(channel)
    this.expire(history, Date.now())
    return history.after(lastEventId)
  }

  readAfterPosition (channel: string, position: string): Replay {
    const history = this.history(channel)
    this.expire(history, Date.now())
    return history.afterPosition(position)
  }

  /** Answers at once: a new subscriber knows where it starts, and its stream's cursor places it, from the start. */
  head (channel: string): string | undefined {
    const history = this.channels.get(channel)
    if (history === undefined) return undefined
    this.expire(history, Date.now())
    return history.newest()
  }

  listen (channel: string, listener: StoredEventListener): void {
    this.history(channel).listeners.add(listener)
  }

  unlisten (channel: string, listener: StoredEventListener): void {
    this.channels.get(channel)?.listeners.delete(listener)
  }

  close (): void {
    this.channels.clear()
  }

  private history (channel: string): ChannelHistory {
    let history = this.channels.get(channel)
    if (history === undefined) {
      history = new ChannelHistory(this.historySize, this.firstSeq)
      this.channels.set(channel, history)
    }
    return history
  }

  private expire (history: ChannelHistory, now: number): void {
    if (this.historyMaxAge > 0) history.expire(now - this.historyMaxAge)
  }
}

function checkWhole (name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FST_SSE_INVALID_OPTION(name, 'a whole number, 0 or more', describe(value))
  }
}

// The first sequence number of the last store made in this process.
let lastFirstSeq = 0

/**
 * The time now in microseconds since the epoch, and never the same for two stores of one process (two made in the
 * same microsecond, or the same millisecond, as Date.now() would tell, must not give their first events one id).
 */
function firstSequence (): number {
  lastFirstSeq = Math.max(Math.floor((performance.timeOrigin + performance.now()) * 1000), lastFirstSeq + 1)
  return lastFirstSeq
}
