import type { FastifyBaseLogger } from 'fastify'
import type { EventStream } from './event-stream'
import type { ChannelEvent, SseMessage, SseSerializer } from '../core/events'
import type { Replay, SseStore, StoredEvent } from '../stores/store'
import { NO_EVENT_ID, type ResumeFrom } from './cursor'
import type { Stats } from '../observe/stats'
import type { SsePresence } from './steering'
import { Subscription } from './subscription'
import { CursorFrames } from './cursor-frames'
import { eventId, frameBody, toEvent } from '../protocol/framing'
import { snapshotOf } from '../protocol/snapshot'
import { comparePositions } from '../core/position'
import { FST_SSE_CHANNEL_CLOSED } from '../core/errors'
import { publishChannelPublish } from '../observe/diagnostics'

export { MISSED_EVENT } from './subscription'

/** Decides, per subscriber, which events of a channel it receives. */
export type ChannelFilter = (event: ChannelEvent) => boolean

// How long close() waits for this process's own publishes to come back from a store that delivers them later.
const CLOSE_WAIT_MS = 5000

/**
 * A named fan-out of events. A publish is framed once; the events the store hands over in one tick go to every
 * subscriber as one shared buffer, written once per subscriber. History, positions and delivery across
 * processes are the store's; which events each subscriber is owed is its subscription's.
 */
export class Channel<Message extends SseMessage = SseMessage> {
  readonly name: string
  /** @internal */
  readonly log: FastifyBaseLogger
  private readonly store: SseStore
  private readonly serializer: SseSerializer
  private readonly stats: Stats
  private readonly subscriptions = new Set<Subscription>()
  // Events handed over by the store and not yet written: they go out together at the end of the tick.
  private batch: StoredEvent[] = []
  private batchText = ''
  // While a flush is under way: its frames for streams of several channels, shared by those at the same place.
  private sharing: CursorFrames | undefined
  private flushScheduled = false
  // The position of the last event the store handed over while it listens, and of the last one this process published.
  private livePosition: string | undefined
  // A store without head(): whether the channel knows where it stands (livePosition, undefined: it retains nothing),
  // having been handed an event or having read its history since it began to listen; the read on its way.
  private headKnown = false
  private headRead: Promise<string | undefined> | undefined
  // The first event handed over since that read was asked: the read may answer as of later, past it.
  private handedSinceRead: string | undefined
  private publishedPosition: string | undefined
  // Closing streams that wait for this process's own publishes to come back from the store, and the bound of it.
  private readonly waiting = new Set<EventStream>()
  private waitTimer: NodeJS.Timeout | undefined
  private ended = false
  private closing: Promise<void> | undefined
  // The store hands this channel its events only while it has subscribers (listening counts the times it began).
  private listening = false
  private listenings = 0
  private readonly onStored = (event: StoredEvent): void => this.receive(event)
  // Asks every instance that shares the store how many streams they have subscribed (steering).
  private readonly presenceOf: (name: string) => Promise<SsePresence>

  /** @internal */
  constructor (name: string, store: SseStore, serializer: SseSerializer, log: FastifyBaseLogger, stats: Stats,
    presenceOf: (name: string) => Promise<SsePresence>) {
    this.name = name
    this.store = store
    this.serializer = serializer
    this.log = log
    this.stats = stats
    this.presenceOf = presenceOf
    stats.channels++
  }

  /** How many streams are subscribed. */
  get subscribers (): number {
    return this.subscriptions.size
  }

  get closed (): boolean {
    return this.ended
  }

  /**
   * How many streams are subscribed to it on every instance that shares the store, as each last reported (a second
   * ago at the most over Redis): `{ subscribers }`. An instance gone without a word counts no more within 3 s.
   */
  async presence (): Promise<SsePresence> {
    return await this.presenceOf(this.name)
  }

  /**
   * Publishes an event to every subscriber, in every process sharing the store. The event gets an id when
   * it has none. Resolves to the id; rejects, sending nothing, if the event cannot be framed.
   */
  async publish (message: Message): Promise<string> {
    if (this.ended) throw new FST_SSE_CHANNEL_CLOSED(this.name)
    const event = toEvent(message)
    const id = event.id === undefined ? undefined : eventId(event.id)
    const { body, data } = frameBody(event, this.serializer)
    const listenedBefore = this.listening ? this.listenings : -1
    const stored = await this.store.append(this.name, { id, body, snapshot: snapshotOf(event, data, this.serializer) })
    publishChannelPublish(this.name, stored.id, message)
    // Closing streams wait for it only if the store hands it back: it was listening before the event was taken.
    if (listenedBefore !== this.listenings || !this.listening) return stored.id
    if (this.publishedPosition === undefined || comparePositions(stored.position, this.publishedPosition) > 0) {
      this.publishedPosition = stored.position
    }
    return stored.id
  }

  /**
   * Ends every subscriber's stream, after every event whose publish() resolved (once the store has handed this
   * process's own publishes back, within a few seconds), and refuses further publishes and subscriptions.
   */
  async close (): Promise<void> {
    this.closing ??= this.endStreams()
    await this.closing
  }

  private async endStreams (): Promise<void> {
    this.ended = true
    this.stats.channels--
    const streams = Array.from(this.subscriptions, (subscription) => subscription.stream)
    for (const stream of streams) stream.close()
    // Streams still waiting for a replay, or for this process's publishes to come back, end later.
    await Promise.all(streams.filter((stream) => !stream.hasEnded).map(async (stream) => await new Promise((resolve) => {
      stream.signal.addEventListener('abort', resolve, { once: true })
    })))
    this.stopListening()
  }

  /**
   * @internal Subscribes an open stream (the stream's join() made sure it is): from now on, or first what it missed
   * after an event id or after a position of its cursor. `answer`, when given, is called once the store has said
   * where the subscriber starts, before anything is written for it (at once when the store answers at once), or with
   * the error if it could not: so that a stream is answered only then.
   */
  subscribe (stream: EventStream, filter: ChannelFilter | undefined, from: ResumeFrom,
    answer?: (error?: unknown) => void): void {
    if (this.subscriptions.size === 0) this.startListening()
    // Fresh: the events the store hands over from now on, not those of this tick already in.
    const subscription = new Subscription(this, stream, filter, this.livePosition)
    this.subscriptions.add(subscription)
    this.stats.subscriptions++
    stream.attach(subscription)
    if (from === undefined) {
      this.startAtHead(subscription, answer)
      return
    }
    const store = this.store
    if ('id' in from) {
      this.replay(subscription, undefined, () => store.readAfter(this.name, from.id), false, answer)
    } else if (from.position === undefined) {
      // The channel retained nothing when the client was last told where it stood: all it retains is new to it.
      this.replay(subscription, undefined, () => store.readAfter(this.name, NO_EVENT_ID), true, answer)
    } else {
      const position = from.position
      const readAfterPosition = store.readAfterPosition
      // A store without readAfterPosition gives an event without an id of its own its position as id.
      this.replay(subscription, position, readAfterPosition === undefined
        ? () => store.readAfter(this.name, position)
        : () => readAfterPosition.call(store, this.name, position), false, answer)
    }
  }

  /** Reads what the subscriber missed after `from` (the client's position, when it has one): its start. */
  private replay (subscription: Subscription, from: string | undefined, read: () => Replay | Promise<Replay>,
    fromStart: boolean, answer: ((error?: unknown) => void) | undefined): void {
    subscription.awaitStart(from)
    let replay: Replay | Promise<Replay>
    try {
      replay = read()
    } catch (error) {
      replay = Promise.reject(error)
    }
    if (isPromise(replay)) {
      replay.then((result) => {
        answer?.()
        subscription.replayed(result, fromStart)
      }, (error: unknown) => {
        if (answer === undefined) {
          subscription.replayFailed(error)
          return
        }
        subscription.replayRefused(error)
        answer(error)
      })
    } else {
      answer?.()
      subscription.replayed(replay, fromStart)
    }
  }

  /**
   * A new subscriber is owed the events after the newest one stored now (which, with a store that delivers later than
   * it appends, its listeners may not have had yet): it starts there, so that the stream's cursor places it from the
   * start, published since or not. Until the store says where, what the stream writes waits.
   */
  private startAtHead (subscription: Subscription, answer: ((error?: unknown) => void) | undefined): void {
    // Where the channel stands now: what a subscriber is owed when the store cannot say.
    const live = this.livePosition
    let position: string | undefined | Promise<string | undefined>
    try {
      position = this.head()
    } catch (error) {
      position = Promise.reject(error)
    }
    if (!isPromise(position)) {
      answer?.()
      subscription.startAt(position)
      return
    }
    subscription.awaitStart(undefined)
    position.then((at) => {
      answer?.()
      subscription.startAt(at)
    }, (error: unknown) => {
      if (answer !== undefined) {
        answer(error)
        return
      }
      // The store is away: the subscriber gets what its listeners hand over from now on, as without a head.
      this.log.debug({ err: error, channel: this.name }, 'fastify-sse-h2: the store could not say where a channel stands')
      subscription.startAt(live)
    })
  }

  /**
   * The position of the channel's newest event, undefined when it retains none. A store without head() hands its
   * listeners every event as append() takes it: once the channel has been handed one since it began to listen, or has
   * read its history since, it knows; until then the newest event of its history says (one read, shared).
   */
  private head (): string | undefined | Promise<string | undefined> {
    const store = this.store
    if (store.head !== undefined) return store.head(this.name)
    if (this.headKnown) return this.livePosition
    if (this.headRead !== undefined) return this.headRead
    const listenings = this.listenings
    const newest = (replay: Replay): string | undefined => {
      const events = replay.events
      let i = events.length - 1
      // Events handed over since it was asked came after those who wait for it: they are owed them.
      const handed = this.handedSinceRead
      if (handed !== undefined) while (i >= 0 && comparePositions(events[i].position, handed) >= 0) i--
      const position = i === -1 ? undefined : events[i].position
      if (this.listening && this.listenings === listenings && !this.headKnown) {
        this.livePosition = position
        this.headKnown = true
      }
      return position
    }
    const read = store.readAfter(this.name, NO_EVENT_ID)
    if (!isPromise(read)) return newest(read)
    const reading = read.then(newest)
    const done = (): void => {
      if (this.headRead !== reading) return
      this.headRead = undefined
      this.handedSinceRead = undefined
    }
    reading.then(done, done)
    this.headRead = reading
    return reading
  }

  /** @internal The stream let go of it. */
  unsubscribe (subscription: Subscription): void {
    if (this.subscriptions.delete(subscription)) this.stats.subscriptions--
    if (this.subscriptions.size === 0) this.stopListening()
  }

  // A channel without subscribers in this process costs the store nothing: it need not read it (Redis).
  private startListening (): void {
    this.listening = true
    this.listenings++
    this.store.listen(this.name, this.onStored)
  }

  private stopListening (): void {
    if (!this.listening) return
    this.listening = false
    this.publishedPosition = undefined
    // What it is handed next time it listens says nothing of what came meanwhile.
    this.livePosition = undefined
    this.headKnown = false
    this.headRead = undefined
    this.handedSinceRead = undefined
    this.store.unlisten(this.name, this.onStored)
  }

  /** @internal Before the stream's own write: writes what this tick holds for the subscription, ahead of it. */
  catchUp (subscription: Subscription): void {
    if (this.batch.length > 0) subscription.deliver(this.batch, undefined)
  }

  /** @internal Writes the events of this tick to every subscriber. */
  flush (): void {
    this.flushScheduled = false
    const batch = this.batch
    if (batch.length === 0) return
    const text = this.batchText
    this.batch = []
    this.batchText = ''
    let chunk: Buffer | undefined
    const shared = (): Buffer => (chunk ??= Buffer.from(text))
    // A flush within this one (a write that published) has frames of its own.
    const outer = this.sharing
    this.sharing = new CursorFrames(batch)
    for (const subscription of this.subscriptions) subscription.deliver(batch, shared)
    this.sharing = outer
  }

  /** @internal The frames with cursors that streams share in the flush of `events`, while it is under way. */
  cursorFrames (events: readonly StoredEvent[]): CursorFrames | undefined {
    return this.sharing?.events === events ? this.sharing : undefined
  }

  /**
   * @internal Whether a stream that closes must wait before it ends: the store has not yet handed back every event
   * this process published (a store that delivers through a reader, as Redis does). It is told with `settled()`.
   */
  holdsBack (stream: EventStream): boolean {
    if (this.hasReceivedOwnPublishes()) return false
    this.waiting.add(stream)
    this.waitTimer ??= setTimeout(() => {
      this.log.warn({ channel: this.name, waitedMs: CLOSE_WAIT_MS },
        'fastify-sse-h2: the store did not hand back this process\'s last publishes in time; closing streams ended without them')
      this.releaseWaiting()
    }, CLOSE_WAIT_MS)
    return true
  }

  private receive (event: StoredEvent): void {
    this.livePosition = event.position
    this.headKnown = true
    if (this.headRead !== undefined) this.handedSinceRead ??= event.position
    this.batch.push(event)
    this.batchText += event.frame
    if (!this.flushScheduled) {
      this.flushScheduled = true
      process.nextTick(flushChannel, this)
    }
    if (this.waiting.size > 0 && this.hasReceivedOwnPublishes()) {
      this.flush()
      this.releaseWaiting()
    }
  }

  private hasReceivedOwnPublishes (): boolean {
    const published = this.publishedPosition
    return published === undefined ||
      (this.livePosition !== undefined && comparePositions(this.livePosition, published) >= 0)
  }

  private releaseWaiting (): void {
    clearTimeout(this.waitTimer)
    this.waitTimer = undefined
    this.publishedPosition = undefined
    const streams = Array.from(this.waiting)
    this.waiting.clear()
    for (const stream of streams) stream.settled()
  }
}

function flushChannel (channel: Channel): void {
  channel.flush()
}

function isPromise<T> (value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Promise<T>)?.then === 'function'
}
