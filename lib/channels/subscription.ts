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
  // Live events that arrive while the replay is read: written after it, those it did not already hold.
  private backlog: StoredEvent[] | undefined
  // Meanwhile, what the stream's cursor says of it: the position the client is known to have.
  private replayFrom: string | undefined
  // Its filter threw, or the stream let go of it: nothing more is written for it.
  private cancelled = false
  // How many frames the last framesFrom() gave: the events a write holds, for the stats.
  private framed = 0

  constructor (channel: Channel, stream: EventStream, filter: ChannelFilter | undefined, position: string | undefined) {
    this.channel = channel
    this.stream = stream
    this.filter = filter
    this.position = position
  }

  /** True while its replay is being read: the stream's close waits for it. */
  get replaying (): boolean {
    return this.backlog !== undefined
  }

  /**
   * Its position in the stream's cursor: the last event written or skipped, or, while its replay is read, the one
   * it resumes from (undefined when that is not known yet: a resume from it repeats events rather than skip any).
   */
  get cursorPosition (): string | undefined {
    return this.backlog === undefined ? this.position : this.replayFrom
  }

  /**
   * Writes the events after its position, in order. `shared` is the frames of all of `events` as one chunk, which
   * every subscriber without a filter that is owed all of them is given as it is: a reference, not a copy. (Not on
   * a stream of several channels, whose ids are its own.)
   */
  deliver (events: readonly StoredEvent[], shared: (() => Buffer) | undefined): void {
    if (this.backlog !== undefined) {
      for (const event of events) this.backlog.push(event)
      return
    }
    if (this.cancelled || this.stream.hasEnded) return
    const from = this.firstAfterPosition(events)
    if (from === events.length) return
    if (shared !== undefined && from === 0 && this.filter === undefined && this.stream.cursor === undefined) {
      this.position = events[events.length - 1].position
      this.stream.writeShared(shared(), events.length)
      return
    }
    const frames = this.framesFrom(events, from)
    if (frames !== '') this.stream.writeShared(frames, this.framed)
  }

  /** Holds live events back until `replayed()`; the stream's cursor says `from` of it meanwhile. */
  startReplay (from: string | undefined): void {
    this.backlog = []
    this.replayFrom = from
  }

  /**
   * Writes what the replay holds, then what arrived live meanwhile, each event once. Without `found`, a `missed`
   * event first, unless `fromStart`: the replay is all the channel retains, which is all it published since.
   */
  replayed (replay: Replay, fromStart = false): void {
    const backlog = this.backlog as StoredEvent[]
    this.backlog = undefined
    if (this.cancelled || this.stream.hasEnded) return
    // Replayed from the client's own position, not from where the channel stood when it subscribed.
    this.position = replay.found ? replay.position : undefined
    let frames = replay.found || fromStart ? '' : this.missedFrame(replay.events)
    frames += this.framesFrom(replay.events, this.firstAfterPosition(replay.events))
    let events = this.framed + (replay.found || fromStart ? 0 : 1)
    // Read after the replay began, the backlog may repeat its last events, or (a store whose live feed lags)
    // events before the client's own last id: its position skips them.
    frames += this.framesFrom(backlog, this.firstAfterPosition(backlog))
    events += this.framed
    this.stream.stats.replayed(this.stream, this.channel.name, replay.found || fromStart ? 'resumed' : 'missed', events)
    this.stream.writeReplay(frames, events)
    this.stream.settled()
  }

  /** Starts after `position` (the channel's newest event when it subscribed): what arrived meanwhile after it is written. */
  startAt (position: string | undefined): void {
    const backlog = this.backlog
    this.backlog = undefined
    this.position = position
    if (this.cancelled || this.stream.hasEnded) return
    if (backlog !== undefined) {
      const frames = this.framesFrom(backlog, this.firstAfterPosition(backlog))
      if (frames !== '') this.stream.writeShared(frames, this.framed)
      this.stream.settled()
    }
  }

  /** Its replay failed before its stream was answered: the stream is refused, never opened; the replay counts as failed. */
  replayRefused (error: unknown): void {
    this.stream.stats.replayed(this.stream, this.channel.name, 'failed', 0, error)
  }

  replayFailed (error: unknown): void {
    this.backlog = undefined
    if (this.cancelled || this.stream.hasEnded) return
    // A stream already closing (the app closing, and its store with it) resumes from the same id next time.
    const closing = this.stream.closed
    this.channel.log[closing ? 'debug' : 'error']({ err: error, channel: this.channel.name },
      'fastify-sse-h2: the replay of a channel failed; the stream was closed')
    this.stream.stats.replayed(this.stream, this.channel.name, 'failed', 0, error)
    this.stream.settled()
    this.stream.close()
  }

  /** The stream let go of it (`unsubscribe()`): nothing more is written for it, its replay included. */
  cancel (): void {
    this.cancelled = true
    this.backlog = undefined
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
