import type { FastifyBaseLogger } from 'fastify'
import type { EventStream } from './event-stream'
import type { SseEvent, SseMessage, SseSerializer } from './types'
import type { Replay, SseStore, StoredEvent } from './store'
import { eventId, frameBody, toEvent } from './framing'
import { FST_SSE_CHANNEL_CLOSED } from './errors'

/** Decides, per subscriber, which events of a channel it receives. */
export type ChannelFilter = (event: ChannelEvent) => boolean

/** What a filter is given: the event as it was published, with its id. */
export interface ChannelEvent extends SseEvent {
  id: string
}

/** The type of the event a subscriber gets first when its last event id is no longer retained. */
export const MISSED_EVENT = 'missed'

interface Subscriber {
  stream: EventStream
  filter: ChannelFilter | undefined
  /** Live events held back while the subscriber's replay is being read. */
  backlog: StoredEvent[] | undefined
  /** The last event of the current batch the replay already wrote: the batch resumes after it. */
  skipThrough: StoredEvent | undefined
}

/**
 * A named fan-out of events. A publish is framed once; the events published in one tick go to every
 * subscriber as one shared buffer, written once per subscriber. History, ids and delivery across
 * processes are the store's.
 */
export class Channel<Message extends SseMessage = SseMessage> {
  readonly name: string
  private readonly store: SseStore
  private readonly serializer: SseSerializer
  private readonly log: FastifyBaseLogger
  private readonly members = new Set<Subscriber>()
  private batch: StoredEvent[] = []
  private batchText = ''
  private flushScheduled = false
  private ended = false
  private readonly onStored = (event: StoredEvent): void => this.deliver(event)

  /** @internal */
  constructor (name: string, store: SseStore, serializer: SseSerializer, log: FastifyBaseLogger) {
    this.name = name
    this.store = store
    this.serializer = serializer
    this.log = log
    store.listen(name, this.onStored)
  }

  /** How many streams are subscribed. */
  get subscribers (): number {
    return this.members.size
  }

  get closed (): boolean {
    return this.ended
  }

  /**
   * Publishes an event to every subscriber, in every process sharing the store. The event gets an id when
   * it has none. Resolves to the id; rejects, sending nothing, if the event cannot be framed.
   */
  async publish (message: Message): Promise<string> {
    if (this.ended) throw new FST_SSE_CHANNEL_CLOSED(this.name)
    const event = toEvent(message)
    const id = event.id === undefined ? undefined : eventId(event.id)
    const stored = await this.store.append(this.name, { id, body: frameBody(event, this.serializer), event })
    return stored.id
  }

  /** Ends every subscriber's stream and refuses further publishes and subscriptions. */
  close (): void {
    if (this.ended) return
    this.ended = true
    this.store.unlisten(this.name, this.onStored)
    for (const member of this.members) member.stream.close()
    this.members.clear()
  }

  /** @internal Subscribes an open stream, replaying what it missed after its last event id. */
  subscribe (stream: EventStream, lastEventId: string | undefined, filter: ChannelFilter | undefined): void {
    if (stream.closed) return
    const member: Subscriber = { stream, filter, backlog: undefined, skipThrough: undefined }
    this.members.add(member)
    stream.onClose = () => this.members.delete(member)
    stream.beforeOwnWrite = () => this.catchUp(member)
    if (lastEventId === undefined) return
    member.backlog = []
    let replay: Replay | Promise<Replay>
    try {
      replay = this.store.readAfter(this.name, lastEventId)
    } catch (error) {
      replay = Promise.reject(error)
    }
    if (isPromise(replay)) {
      replay.then((result) => this.replay(member, result), (error: unknown) => this.replayFailed(member, error))
    } else {
      this.replay(member, replay)
    }
  }

  private replay (member: Subscriber, replay: Replay): void {
    const { stream } = member
    if (stream.closed) return
    // Events delivered while the replay was read, and events published but not yet flushed, may also be in
    // the replay: each is written once.
    let events = replay.events
    const later = (member.backlog as StoredEvent[]).concat(this.batch)
    if (later.length > 0) {
      const replayed = new Set(events.map((event) => event.id))
      events = events.concat(later.filter((event) => !replayed.has(event.id)))
    }
    const frames = this.framesFor(member, events, 0)
    member.backlog = undefined
    member.skipThrough = this.batch.length > 0 ? this.batch[this.batch.length - 1] : undefined
    stream.writeReplay((replay.found ? '' : missedFrame(replay.events)) + frames)
  }

  /** The frames of `events` from `from` that the member's filter lets through; none if the filter threw. */
  private framesFor (member: Subscriber, events: StoredEvent[], from: number): string {
    const filter = member.filter
    let frames = ''
    for (let i = from; i < events.length; i++) {
      const event = events[i]
      if (filter === undefined) {
        frames += event.frame
        continue
      }
      try {
        if (filter({ ...event.event, id: event.id })) frames += event.frame
      } catch (error) {
        // One subscriber's broken filter must not stop the fan-out to the others.
        this.log.error({ err: error, channel: this.name }, 'fastify-sse-h2: a subscription filter threw; its stream was closed')
        member.stream.close()
        return ''
      }
    }
    return frames
  }

  /**
   * Before a subscriber's own send(), what was published for it this tick and not yet written goes ahead, so
   * that it receives everything in the order it happened; the batch then resumes after it.
   */
  private catchUp (member: Subscriber): void {
    if (member.backlog !== undefined || this.batch.length === 0) return
    const from = member.skipThrough === undefined ? 0 : this.batch.indexOf(member.skipThrough) + 1
    const frames = this.framesFor(member, this.batch, from)
    member.skipThrough = this.batch[this.batch.length - 1]
    member.stream.queueLive(frames)
  }

  private replayFailed (member: Subscriber, error: unknown): void {
    this.log.error({ err: error, channel: this.name }, 'fastify-sse-h2: the replay of a channel failed; the stream was closed')
    member.stream.close()
  }

  private deliver (event: StoredEvent): void {
    this.batch.push(event)
    this.batchText += event.frame
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(flushChannel, this)
    }
  }

  /** @internal Writes the events of this tick to every subscriber. */
  flush (): void {
    const batch = this.batch
    const text = this.batchText
    this.batch = []
    this.batchText = ''
    this.flushScheduled = false
    let shared: Buffer | undefined
    for (const member of this.members) {
      if (member.backlog !== undefined) {
        for (const event of batch) member.backlog.push(event)
      } else if (member.filter === undefined && member.skipThrough === undefined) {
        shared ??= Buffer.from(text)
        member.stream.writeLive(shared)
      } else {
        const from = member.skipThrough === undefined ? 0 : batch.indexOf(member.skipThrough) + 1
        member.skipThrough = undefined
        const own = this.framesFor(member, batch, from)
        if (own !== '') member.stream.writeLive(own)
      }
    }
  }
}

function flushChannel (channel: Channel): void {
  channel.flush()
}

function isPromise<T> (value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Promise<T>)?.then === 'function'
}

function missedFrame (retained: StoredEvent[]): string {
  const oldestId = retained.length > 0 ? retained[0].id : null
  return 'event: ' + MISSED_EVENT + '\ndata: ' + JSON.stringify({ oldestId }) + '\n\n'
}
