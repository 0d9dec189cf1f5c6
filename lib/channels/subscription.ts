import type { Channel, ChannelFilter } from './channel'
import type { EventStream } from './event-stream'
import type { Replay, StoredEvent } from '../stores/store'
import type { StreamCursor } from './cursor'
import { comparePositions } from '../core/position'

/** The type of the event a subscriber gets first when its last event id is no longer retained. */
export const MISSED_EVENT = 'missed'

/**
 * One stream's subscription to one channel. It remembers the position of the last event it wrote (or let its
 * filter skip), and writes only events after it: replayed, live, or caught up before the stream's own write,
 * whichever way an event comes, and however often, it is written once and in order. On a stream of several
 * channels, each event it writes carries the stream's cursor as its id.
 */
export class Subscription {
  readonly channel: Channel
  readonly stream: EventStream
  filter: ChannelFilter | undefined
  /** The position of the last event written or skipped; undefined: every event the channel hands it is new. */
  position: string | undefined
  /** Its key in the stream's cursor, and its part of the cursor, for the position and salt it was made for. */
  cursorKey = ''
  segment = ''
  segmentPosition: string | undefined
  segmentGeneration = -1
  // Where it starts, while its replay (or its store's head()) is on the way: `waiting`, and then `ready` until its
  // stream writes it in its place among what it held meanwhile (see EventStream's holdFor()).
  private start: 'live' | 'waiting' | 'ready' = 'live'
  // Meanwhile, what the stream's cursor says of it: the position the client is known to have.
  private replayFrom: string | undefined
  // Its start once known: the replay read, and whether it is all the channel retains; or the head (no replay).
  private replay: Replay | undefined
  private fromStart = false
  private headPosition: string | undefined
  // Its filter threw, or the stream let go of it: nothing more is written for it.
  private cancelled = false
  // The stream let go of it while it held what it writes: what it held for it from before is still written.
  private left = false
  // How many frames the last framesFrom() gave: the events a write holds, for the stats.
  private framed = 0

  constructor (channel: Channel, stream: EventStream, filter: ChannelFilter | undefined, position: string | undefined) {
    this.channel = channel
    this.stream = stream
    this.filter = filter
    this.position = position
  }

  /**
   * Its position in the stream's cursor: the last event written or skipped, or, until its start is written, the one
   * it resumes from (what the client came with, or where the store said it starts).
   */
  get cursorPosition (): string | undefined {
    return this.start === 'live' ? this.position : this.replayFrom
  }

  /**
   * Writes the events after its position, in order. `shared` is the frames of all of `events` as one chunk, which
   * every subscriber without a filter that is owed all of them is given as it is: a reference, not a copy. (Not on
   * a stream of several channels, whose ids are its own.)
   */
  deliver (events: readonly StoredEvent[], shared: (() => Buffer) | undefined): void {
    if (!this.stream.holds(this, events, shared)) this.write(events, shared)
  }

  /** @internal As deliver(), now: its stream holds nothing, or writes what it held. */
  write (events: readonly StoredEvent[], shared: (() => Buffer) | undefined): void {
    if (this.cancelled || this.stream.hasEnded) return
    // Unless the stream subscribed to its channel anew meanwhile: the new subscription starts after them.
    if (this.left && this.stream.subscriptions.some((other) => other.channel === this.channel)) return
    const from = this.firstAfterPosition(events)
    if (from === events.length) return
    if (from === 0 && this.filter === undefined) {
      const frames = this.sharedFrames(events, shared)
      if (frames !== undefined) {
        this.position = events[events.length - 1].position
        this.stream.writeShared(frames, events.length)
        return
      }
    }
    const frames = this.framesFrom(events, from)
    if (frames !== '') this.stream.writeShared(frames, this.framed)
  }

  /**
   * The frames of all of `events` as other subscribers write them too: the channel's (a stream of one channel), or those
   * of the streams of several channels that stand where this one does (the same cursors). Undefined: its own.
   */
  private sharedFrames (events: readonly StoredEvent[], shared: (() => Buffer) | undefined): Buffer | undefined {
    const cursor = this.stream.cursor
    if (cursor === undefined) return shared?.()
    const sharing = this.channel.cursorFrames(events)
    if (sharing === undefined || !cursor.sharesFrames) return undefined
    return sharing.framesFor(cursor.keySalt, this, this.stream.subscriptions, () => this.framesFrom(events, 0))
  }

  /**
   * Where it starts is on its way (a replay, or its store's head()): its stream holds what it would write from now
   * on, this subscription's live events included; its cursor says `from` of it meanwhile.
   */
  awaitStart (from: string | undefined): void {
    this.start = 'waiting'
    this.replayFrom = from
    this.stream.holdFor(this)
  }

  /**
   * Its replay is read: written in its place (then what its stream held after it), each event once. Without `found`,
   * a `missed` event first, unless `fromStart`: the replay is all the channel retains, which is all it published since.
   */
  replayed (replay: Replay, fromStart = false): void {
    this.replay = replay
    this.fromStart = fromStart
    if (replay.found) this.replayFrom = replay.position
    this.ready()
  }

  /**
   * Starts after `position` (the channel's newest event when it subscribed; undefined: it retains none, so it starts
   * after what this tick handed over before it subscribed, if anything).
   */
  startAt (position: string | undefined): void {
    if (this.start === 'live') {
      this.position = position ?? this.position
      return
    }
    this.headPosition = position ?? this.position
    this.replayFrom = this.headPosition
    this.ready()
  }

  /** @internal Its stream writes its start, in its place: the replay, or nothing (a head); from then on it is live. */
  writeStart (): void {
    const replay = this.replay
    this.replay = undefined
    this.start = 'live'
    if (this.cancelled || this.stream.hasEnded) return
    if (replay === undefined) {
      this.position = this.headPosition
      return
    }
    const fromStart = this.fromStart
    // Replayed from the client's own position, not from where the channel stood when it subscribed.
    this.position = replay.found ? replay.position : undefined
    let frames = replay.found || fromStart ? '' : this.missedFrame(replay.events)
    frames += this.framesFrom(replay.events, this.firstAfterPosition(replay.events))
    const events = this.framed + (replay.found || fromStart ? 0 : 1)
    this.stream.stats.replayed(this.stream, this.channel.name, replay.found || fromStart ? 'resumed' : 'missed', events)
    this.stream.writeReplay(frames, events)
  }

  private ready (): void {
    this.start = 'ready'
    this.stream.started()
  }

  /** Its replay failed before its stream was answered: the stream is refused, never opened; the replay counts as failed. */
  replayRefused (error: unknown): void {
    this.stream.stats.replayed(this.stream, this.channel.name, 'failed', 0, error)
  }

  replayFailed (error: unknown): void {
    // Left meanwhile: nothing of it was owed any more.
    if (this.cancelled) {
      this.ready()
      return
    }
    if (!this.stream.hasEnded) {
      // A stream already closing (the app closing, and its store with it) resumes from the same id next time.
      const closing = this.stream.closed
      this.channel.log[closing ? 'debug' : 'error']({ err: error, channel: this.channel.name },
        'fastify-sse-h2: the replay of a channel failed; the stream was closed')
      this.stream.stats.replayed(this.stream, this.channel.name, 'failed', 0, error)
    }
    this.cancelled = true
    this.ready()
    this.stream.close()
  }

  /**
   * The stream let go of it (`unsubscribe()`): nothing more is written for it, its replay included (its stream holds
   * what it writes until the store has answered all the same: a stream is answered only then); what its stream held
   * for it from before still is.
   */
  cancel (): void {
    if (this.start === 'live' && this.stream.holding) this.left = true
    else this.cancelled = true
  }

  private firstAfterPosition (events: readonly StoredEvent[]): number {
    const position = this.position
    if (position === undefined) return 0
    let i = 0
    while (i < events.length && comparePositions(events[i].position, position) <= 0) i++
    return i
  }

  /**
   * The frames of `events` from `from` (the first after the position: the rest follow it, in the store's order)
   * that the filter lets through; moves the position past all of them.
   */
  private framesFrom (events: readonly StoredEvent[], from: number): string {
    const filter = this.filter
    const cursor = this.stream.cursor
    if (cursor !== undefined && from < events.length) cursor.prepare(this, this.stream.subscriptions, events[from].position)
    let frames = ''
    this.framed = 0
    for (let i = from; i < events.length; i++) {
      const event = events[i]
      this.position = event.position
      // A store's missed event (its live feed was cut past its history): as a replay's, unfiltered, the cursor its id.
      if (event.missed === true) {
        frames += cursor === undefined ? event.frame : 'id: ' + cursor.idOf(this, event.position) + '\n' + event.frame
        this.framed++
        continue
      }
      let passes = true
      if (filter !== undefined) {
        try {
          passes = filter(event.event)
        } catch (error) {
          // One subscriber's broken filter must not stop the fan-out to the others.
          this.channel.log.error({ err: error, channel: this.channel.name },
            'fastify-sse-h2: a subscription filter threw; its stream was closed')
          this.cancelled = true
          this.stream.close()
          this.framed = 0
          return ''
        }
      }
      if (!passes) continue
      frames += cursor === undefined ? event.frame : withCursor(cursor, this, event)
      this.framed++
    }
    return frames
  }

  private missedFrame (retained: readonly StoredEvent[]): string {
    const oldestId = retained.length > 0 ? retained[0].id : null
    const frame = 'event: ' + MISSED_EVENT + '\ndata: ' + JSON.stringify({ channel: this.channel.name, oldestId }) + '\n\n'
    const cursor = this.stream.cursor
    if (cursor === undefined) return frame
    // With the cursor that says the channel has no position: a reconnect before the next event is not told again.
    cursor.prepare(this, this.stream.subscriptions, undefined)
    return 'id: ' + cursor.idOf(this, undefined) + '\n' + frame
  }
}

/** The event's frame with the stream's cursor for its id: its own id line (`id: <id>\n`) replaced. */
function withCursor (cursor: StreamCursor, subscription: Subscription, event: StoredEvent): string {
  return 'id: ' + cursor.idOf(subscription, event.position) + '\n' + event.frame.slice(event.id.length + 5)
}
