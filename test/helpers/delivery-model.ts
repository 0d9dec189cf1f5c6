import fc from 'fast-check'
import { once } from 'node:events'
import type { EventToStore, SseStore, StoredEvent } from '../../lib/stores/store'
import type { Channel } from '../../lib/channels/channel'
import type { RawResponse } from '../../lib/stream/response'
import { EventStream } from '../../lib/channels/event-stream'
import { StreamGroup } from '../../lib/stream/stream-group'
import type { ClosingConnections } from '../../lib/stream/closing-connections'
import { ChannelSchemas } from '../../lib/channels/channel-schemas'
import type { FastifyInstance } from 'fastify'
import { Channels } from '../../lib/channels/channels'
import { Stats } from '../../lib/observe/stats'
import { MISSED_EVENT } from '../../lib/channels/subscription'
import { comparePositions } from '../../lib/core/position'
import { StreamCursor, type ResumeFrom } from '../../lib/channels/cursor'
import { isCursor } from '../../lib/protocol/cursor-encoding'
import { StreamLimits } from '../../lib/stream/stream-limits'
import { FST_SSE_SERVER_CLOSING } from '../../lib/core/errors'
import { anyId, mangled, sendsBack, type Mangle } from './model-ids'
import { FakeResponse, recordingLogger, type LoggedRecord, type ReadMode } from './fake-response'
import { within } from './wait'

// A model-based test of the delivery core: random interleavings of subscribe (fresh, or resuming by Last-Event-ID,
// as it was or mangled: cut, a plain id, an entry given twice; to one channel or to a list of them; admitted or
// refused by limits, as reply.sse() does, and answered once every channel's store said where it starts), subscribe
// and unsubscribe on an open stream, publish (single, bursts in one tick, one message object reused, ids of the
// publisher's own from the whole of UTF-16; history before any subscriber), the stream's own send(), client reads,
// stalls and disconnects, stream, channel and app close — with no waiting between them unless a `wait` says so — run
// against real EventStreams, Channels and a store, over fake responses whose clients the test drives. A small reference model says what each connection
// must have received, channel by channel (with its own sends in their place): compared exactly for a connection the
// server ended, as a prefix for one that went away or was dropped as slow. On a stream of several channels every id
// is a cursor; the model reads each one back and checks it against what the client had received by then.

export const USERS = [undefined, 'ann', 'bob', undefined] as const
// The client address of each user, for limits per address.
const ADDRESSES = ['10.0.0.1', '10.0.0.1', '10.0.0.2', '10.0.0.2'] as const
const BIG = 'x'.repeat(700)
const CHANNEL_NAMES = ['a', 'b', 'c'] as const
type ChannelName = typeof CHANNEL_NAMES[number]
type Recipient = 'ann' | 'bob'

export interface ModelOptions {
  /** Events the store keeps per channel (its `historySize`): the model expects `missed` past it. */
  history: number
  maxBufferedBytes: number
  /** Instances (processes) over one shared store backend: a store for each. */
  makeStores: () => SseStore[] | Promise<SseStore[]>
  /**
   * `exact`: the store hands events to listeners as it appends them (memory): each connection's whole log, own
   * sends included, is known in advance. `positions`: listeners get events later, from a reader (Redis): a
   * connection's events are checked against the order of positions, and its own sends apart.
   */
  check: 'exact' | 'positions'
  /** Limits on each instance, taken when a stream is admitted (before any store answers for it). */
  limits?: { maxStreams: number, maxStreamsPerAddress: number }
}

interface Published {
  n: number
  channel: ChannelName
  to: Recipient
  /** The id publish() resolved to; the publisher's own when `own` is set. */
  id: string | undefined
  own: string | undefined
  position: string | undefined
  instance: number
  /** The step of the run in which publish() was called; resolved: whether it has. */
  step: number
  resolved: boolean
  /** It was never published: the app closed meanwhile, or its id is one no client sends back (refused). */
  failed?: boolean
}

type Item = `n${number}` | `own${number}` | `missed:${ChannelName}`

/** One channel a connection subscribed to (again, after it left: another one). */
interface Joined {
  name: ChannelName
  channel: Channel
  /** Where it started, as the stream was to take it: now, after an id, or after a position of the client's cursor. */
  from: ResumeFrom
  /** `positions`: the step it subscribed in, and the publishes of its channel resolved by then. */
  step: number
  resolvedAtStart: Set<number>
  /** The newest position the channel had given by then: where a fresh subscription's cursor may start, at the least. */
  newestAtStart: string | undefined
  left: boolean
  /**
   * Left while its stream held what it writes (a start on its way): what of it was held then may or may not be
   * written (a start is not), so only the order of what it received is checked.
   */
  leftWhileHeld?: boolean
}

/** How the connection's route opened its stream: `reply.sse(channel)` (one) or `reply.sse([...])` (a list). */
interface Route {
  names: ChannelName[]
  list: boolean
}

class Connection {
  readonly user: number
  readonly instance: number
  readonly route: Route
  readonly res: FakeResponse
  readonly stream: EventStream
  readonly lastEventId: string | undefined
  readonly joined: Joined[] = []
  /** What it must receive, in order (`exact`): the model appends while `accepting`. */
  readonly expected: Item[] = []
  /** Its own sends, in order. */
  readonly own: Item[] = []
  /** `positions`: the step it subscribed in, and the publishes resolved by its close, by channel. */
  readonly step: number
  resolvedAtClose: Map<ChannelName, Set<number>> | undefined
  /** The model's own account of whether its ids are cursors, and of the client's cursor as the stream reads it. */
  writesCursors: boolean
  readonly clientCursor: StreamCursor
  accepting = true
  alwaysFast = true
  disconnected = false
  /** Answered (its headers sent) once every channel of its route said where it starts; refused then, if it was. */
  opened = false
  refusedWhenAnswered = false
  /**
   * Closed while its stream held what it writes (a start on its way): it ends once that is written, and events its
   * channels were handed meanwhile, published after the close, may come before the end.
   */
  heldAtClose = false
  /** The step in which it stopped accepting: events published after it are late. */
  stoppedAt = Infinity

  constructor (world: World, user: number, instance: number, route: Route, res: FakeResponse, stream: EventStream,
    lastEventId: string | undefined) {
    this.user = user
    this.instance = instance
    this.route = route
    this.res = res
    this.stream = stream
    this.lastEventId = lastEventId
    this.step = world.step
    this.writesCursors = route.list
    this.clientCursor = new StreamCursor(lastEventId)
  }

  /** The channel of that name it is subscribed to now. */
  subscribed (name: ChannelName): Joined | undefined {
    return this.joined.find((joined) => joined.name === name && !joined.left)
  }

  /** The model stops appending to it: the server is closing it. */
  stopAccepting (world: World): void {
    if (!this.accepting) return
    this.accepting = false
    this.heldAtClose = this.stream.holding
    this.stoppedAt = world.step
    if (!this.disconnected) this.resolvedAtClose = new Map(CHANNEL_NAMES.map((name) => [name, world.resolved(name)]))
  }

  received (): Item[] {
    return this.res.events.map((event): Item => {
      if (event.event === MISSED_EVENT) return `missed:${(JSON.parse(event.data) as { channel: ChannelName }).channel}`
      if (event.data.startsWith('own')) return event.data as Item
      return `n${(JSON.parse(event.data) as { n: number }).n}`
    })
  }

  /** The id the client would resume with: the last one it received, else the one it came with. */
  cursor (): string | undefined {
    for (let i = this.res.events.length - 1; i >= 0; i--) {
      const id = this.res.events[i].id
      if (id !== undefined) return id
    }
    return this.lastEventId
  }
}

interface Instance {
  store: SseStore
  openStreams: StreamGroup
  channels: Channels
}

export class World {
  readonly options: ModelOptions
  readonly logs: LoggedRecord[] = []
  readonly log = recordingLogger(this.logs)
  readonly instances: Instance[]
  readonly published = new Map<ChannelName, Published[]>(CHANNEL_NAMES.map((name) => [name, []]))
  readonly connections: Connection[] = []
  readonly latest: Array<Connection | undefined> = USERS.map(() => undefined)
  readonly settling: Array<Promise<unknown>> = []
  readonly publishing: Array<Promise<unknown>> = []
  // One message object for every publish that reuses it, as an app with a row buffer would.
  readonly reused: { data: { to: Recipient, n: number, pad?: string }, id?: string } = { data: { to: 'ann', n: -1 } }
  /** What was wrong at some step, found then (limits). */
  readonly problems: string[] = []
  appClosed = false
  /** Counts the commands run: what happened in which order, for the `positions` check. */
  step = 0
  private nextN = 0
  private nextOwn = 0

  constructor (options: ModelOptions, stores: SseStore[]) {
    this.options = options
    this.instances = stores.map((store) => {
      const positioned = this.recordingPositions(store)
      const stats = new Stats()
      return {
        store,
        openStreams: new StreamGroup(0, options.maxBufferedBytes, 0, stats, options.limits === undefined
          ? undefined
          : new StreamLimits(options.limits.maxStreams, options.limits.maxStreamsPerAddress, 1)),
        channels: new Channels(positioned, JSON.stringify, this.log, noSchemas, stats)
      }
    })
    // The filters tagged subscriptions name (a function cannot travel between instances).
    for (const { channels } of this.instances) {
      for (const key of ['ann', 'bob'] as const) channels.filter(`to:${key}`, (event) => (event.data as Published).to === key)
    }
  }

  /** The store, telling the model the position it gave each publish (publish() resolves to the id only). */
  private recordingPositions (store: SseStore): SseStore {
    const record = (event: EventToStore, stored: StoredEvent): StoredEvent => {
      const n = (JSON.parse(event.snapshot) as { data: { n: number } }).data.n
      this.record(n).position = stored.position
      return stored
    }
    const wrapped: SseStore = {
      append: (channel, event) => {
        const stored = store.append(channel, event)
        return stored instanceof Promise ? stored.then((value) => record(event, value)) : record(event, stored)
      },
      readAfter: (channel, lastEventId) => store.readAfter(channel, lastEventId),
      listen: (channel, listener) => store.listen(channel, listener),
      unlisten: (channel, listener) => store.unlisten(channel, listener),
      close: () => store.close()
    }
    // Steering's messages between the instances go through the store as they are.
    if (store.control !== undefined) wrapped.control = store.control
    for (const optional of ['head', 'readAfterPosition'] as const) {
      const method = store[optional] as ((...args: unknown[]) => unknown) | undefined
      if (method !== undefined) (wrapped as unknown as Record<string, unknown>)[optional] = (...args: unknown[]) => method.apply(store, args)
    }
    return wrapped
  }

  record (n: number): Published {
    for (const records of this.published.values()) {
      const found = records.find((record) => record.n === n)
      if (found !== undefined) return found
    }
    throw new Error(`no publish n${n}`)
  }

  /** The publishes of a channel that have resolved by now. */
  resolved (channelName: ChannelName): Set<number> {
    return new Set((this.published.get(channelName) as Published[]).filter((record) => record.resolved).map((record) => record.n))
  }

  /** An instance of this run, from a generated number (runs with one instance have only 0). */
  instance (n: number): number {
    return n % this.instances.length
  }

  open (user: number): Connection | undefined {
    const connection = this.latest[user]
    return connection?.accepting === true && !connection.stream.closed ? connection : undefined
  }

  /**
   * A request for the route, as reply.sse() takes it: admitted or refused by the limits; answered (opened) once every
   * channel's store said where it starts, at once or later, and refused then if the server began closing meanwhile.
   */
  subscribe (user: number, instance: number, route: Route, lastEventId: string | undefined): void {
    const { openStreams } = this.instances[instance]
    const limits = openStreams.limits
    const address = ADDRESSES[user]
    if (limits !== undefined) {
      const { all, fromAddress } = this.slotsHeld(instance, address)
      const full = all >= limits.maxStreams || fromAddress >= limits.maxStreamsPerAddress
      const refused = limits.refusal(address) !== undefined
      if (refused !== full) {
        this.problems.push(`step ${this.step}: user ${user} @${instance} ${refused ? 'refused' : 'admitted'} while ${all} ` +
          `streams held a slot there, ${fromAddress} of them from its address`)
      }
      if (refused) {
        count('refused by limits')
        return
      }
    }
    const res = new FakeResponse()
    const stream = new EventStream(res as unknown as RawResponse, this.log, lastEventId, JSON.stringify, openStreams)
    limits?.take(stream, address)
    // Every stream answers to its user's tag, as reply.sse(source, { tags }) does.
    this.instances[instance].channels.tags.tag(stream, [tagOf(user)])
    const connection = new Connection(this, user, instance, route, res, stream, lastEventId)
    this.connections.push(connection)
    this.latest[user] = connection
    const open = (): void => {
      stream.open(200, {}, undefined, false)
      connection.opened = !stream.hasEnded
    }
    let waiting = route.names.length
    let answering = true
    const answer = (): void => {
      if (--waiting > 0) return
      if (answering || !openStreams.closing) {
        open()
      } else {
        // Refused through the reply, which ends its response.
        connection.refusedWhenAnswered = true
        stream.abandon(new FST_SSE_SERVER_CLOSING())
        res.end()
      }
    }
    for (const name of route.names) this.join(connection, name, route.list ? 'list' : 'one', answer)
    answering = false
  }

  /**
   * The streams of an instance that hold a limits slot: admitted, until their connection lets go, they end unopened,
   * or they are dropped (a client behind: its connection may take long to let go).
   */
  private slotsHeld (instance: number, address: string): { all: number, fromAddress: number } {
    const holding = this.connections.filter((connection) => connection.instance === instance &&
      (connection.opened
        ? !connection.res.gone && (connection.stream.signal.reason as { code?: string } | undefined)?.code !== 'FST_SSE_SLOW_CLIENT'
        : !connection.stream.hasEnded))
    return { all: holding.length, fromAddress: holding.filter((connection) => ADDRESSES[connection.user] === address).length }
  }

  /**
   * Subscribes the connection's stream to a channel: as `reply.sse(channel)` does (`one`), or `reply.sse([...])`
   * (`list`), or `stream.subscribe()` on the open stream.
   */
  join (connection: Connection, name: ChannelName, how: 'one' | 'list' | 'subscribe' | 'tagged', answer?: () => void): void {
    const channel = this.instances[connection.instance].channels.channel(name)
    // Its ids are cursors once it carries several channels, or when the client came with a cursor. A stream that
    // turns to cursors reads the client's id then, as a cursor: the channels it has took theirs already.
    if (!connection.writesCursors && (how !== 'one' || (connection.lastEventId !== undefined && isCursor(connection.lastEventId)))) {
      connection.writesCursors = true
      for (const joined of connection.joined) if (!joined.left) connection.clientCursor.resumeOf(joined.name)
    }
    const from: ResumeFrom = connection.writesCursors
      ? connection.clientCursor.resumeOf(name)
      : connection.lastEventId === undefined ? undefined : { id: connection.lastEventId }
    const newestAtStart = (this.published.get(name) as Published[]).reduce<string | undefined>((newest, record) =>
      record.position !== undefined && (newest === undefined || comparePositions(record.position, newest) > 0) ? record.position : newest,
    undefined)
    connection.joined.push({ name, channel, from, step: this.step, resolvedAtStart: this.resolved(name), newestAtStart, left: false })
    const key = USERS[connection.user]
    if (this.options.check === 'exact' && from !== undefined) connection.expected.push(...this.replayOf(name, from, key))
    const filter = key === undefined ? undefined : (event: { data?: unknown }): boolean => (event.data as Published).to === key
    if (how === 'subscribe') connection.stream.subscribe(channel, { filter })
    // Tagged: the command sends it (app.sse.tagged(tag).subscribe()), through the store, to every instance.
    else if (how !== 'tagged') connection.stream.join(channel, filter, how === 'list', answer)
  }

  /** `tagged`: the command sends it (app.sse.tagged(tag).unsubscribe()). */
  leave (connection: Connection, joined: Joined, tagged = false): void {
    joined.left = true
    joined.leftWhileHeld = connection.stream.holding
    if (!tagged) connection.stream.unsubscribe(joined.channel)
  }

  /**
   * The user's streams tagged() reaches now (not closed, on any instance), if the model knows what each of them is
   * owed: none it stopped following (a client gone, not yet ended). Undefined otherwise.
   */
  tagged (user: number): Connection[] | undefined {
    const streams = this.connections.filter((connection) => connection.user === user && !connection.stream.closed)
    return streams.every((connection) => connection.accepting) ? streams : undefined
  }

  /** Every instance reaches the others (as a tagged stream's reply.sse() waits for): what is sent from now reaches it. */
  async steerable (): Promise<void> {
    await Promise.all(this.instances.map(async ({ channels }) => await channels.steering.ready()))
  }

  /**
   * Publishes an event to each recipient; `ids`: none, the publisher's own (`own-id-<n>`), or drawn ones (of which
   * those no client sends back as they are must be refused with FST_SSE_INVALID_ID, and nothing published).
   */
  publish (instance: number, channelName: ChannelName, recipients: Recipient[], reuse: boolean, ids: boolean | string[],
    big: boolean): void {
    const channel = this.instances[instance].channels.channel(channelName)
    for (const [i, to] of recipients.entries()) {
      const n = this.nextN++
      const own = ids === false ? undefined : ids === true ? `own-id-${n}` : ids[i % ids.length]
      const refused = own !== undefined && !sendsBack(own)
      const record: Published = {
        n, channel: channelName, to, id: undefined, own, position: undefined, instance, step: this.step, resolved: false, failed: refused
      }
      let message: { data: { to: Recipient, n: number, pad?: string }, id?: string }
      if (reuse) {
        message = this.reused
        message.data.to = to
        message.data.n = n
        if (record.own !== undefined) message.id = record.own
        else delete message.id
      } else {
        message = { data: { to, n } }
        if (record.own !== undefined) message.id = record.own
      }
      // An event larger than maxBufferedBytes: a client reading at full speed must still get it.
      if (big) message.data.pad = BIG
      else delete message.data.pad
      this.published.get(channelName)?.push(record)
      const publishing = channel.publish(message).then((id) => {
        if (refused) throw new Error(`n${n} published with id ${JSON.stringify(own)}, which a client would not send back as it is`)
        record.id = id
        record.resolved = true
      }, (error: Error & { code?: string }) => {
        if (refused) {
          if (error.code !== 'FST_SSE_INVALID_ID') throw error
          count('ids refused')
          return
        }
        // A publish still on its way when the app closes may fail: it was not published, and nobody is owed it.
        if (!this.appClosed) throw error
        record.failed = true
      })
      this.publishing.push(publishing)
      this.settling.push(publishing)
      if (refused) continue
      for (const connection of this.connections) {
        if (connection.accepting && connection.subscribed(channelName)?.channel === channel && this.passes(connection.user, to)) {
          connection.expected.push(`n${n}`)
        }
      }
      // Changed right after the publish: what was published must not change with it.
      if (reuse) message.data.to = to === 'ann' ? 'bob' : 'ann'
    }
  }

  send (connection: Connection, big: boolean): void {
    const own: Item = `own${this.nextOwn++}`
    connection.stream.send({ data: own, comment: big ? BIG : undefined })
    connection.expected.push(own)
    connection.own.push(own)
  }

  setMode (connection: Connection, mode: ReadMode): void {
    if (mode !== 'fast') connection.alwaysFast = false
    connection.res.setMode(mode)
  }

  closeChannel (instance: number, channelName: ChannelName): void {
    const channel = this.instances[instance].channels.channel(channelName)
    for (const connection of this.connections) {
      if (connection.subscribed(channelName)?.channel === channel) connection.stopAccepting(this)
    }
    this.settling.push(channel.close())
  }

  closeApp (): void {
    this.appClosed = true
    for (const connection of this.connections) connection.stopAccepting(this)
    // As the plugin's hooks do: streams first (preClose), then channels and the store (onClose).
    for (const { openStreams, channels } of this.instances) {
      this.settling.push((async () => {
        // The model waits for its connections itself (finish()): none to let go here.
        openStreams.closeAll(noConnections, { min: 1000, max: 1000 })
        await channels.close()
      })())
    }
  }

  /** Lets every client read, closes the app if it is not, and waits until every connection is over. */
  async finish (): Promise<void> {
    // What it publishes (settle) comes after every step: after a close in the last one, it is late, not owed.
    this.step++
    for (const connection of this.connections) connection.res.setMode('fast')
    if (!this.appClosed) {
      // Every publish resolved, and delivered to every instance: the close then owes every connection all of them.
      await within(Promise.all(this.settling), 'every publish to resolve', 5000)
      await this.settle()
      this.closeApp()
    }
    await within(Promise.all(this.settling), 'the app and its channels to close', 8000).catch((error: Error) => {
      throw new Error(`${error.message}; streams not ended: ${this.describeOpen()}`)
    })
    await within(Promise.all(this.connections.map(async (connection) => {
      if (!connection.res.gone) await once(connection.res, 'close')
    })), 'every connection to close', 5000)
    // A stream whose client left before it was answered ends once its store answers.
    await within(Promise.all(this.connections.map(async (connection) => {
      if (!connection.stream.hasEnded) await once(connection.stream.signal, 'abort')
    })), 'every stream to end', 5000)
  }

  /** The connections whose stream has not ended, and what it waits for. */
  private describeOpen (): string {
    return this.connections.filter((connection) => !connection.stream.hasEnded).map((connection) =>
      connection.stream.subscriptions.map((subscription) => {
        const channel = subscription.channel as unknown as { livePosition?: string, publishedPosition?: string }
        return `user ${connection.user} @${connection.instance} ${subscription.channel.name}: holding ` +
          `${String(connection.stream.holding)}, channel live ${String(channel.livePosition)} published ` +
          `${String(channel.publishedPosition)}, client ${connection.res.mode}`
      }).join(', ')).join('; ')
  }

  /** Why each connection's stream ended, and whether what it received is what the model says. */
  check (): string[] {
    const problems: string[] = []
    for (const [index, connection] of this.connections.entries()) {
      const route = `${connection.route.list ? '[' : ''}${connection.route.names.join(',')}${connection.route.list ? ']' : ''}`
      const label = `connection ${index} (user ${connection.user} on instance ${connection.instance}, ${route}, last id ` +
        `${String(connection.lastEventId)})`
      const code = (connection.stream.signal.reason as { code?: string } | undefined)?.code
      // A client that went away may be ended by the server before its close is noticed.
      const prefixOnly = code === 'FST_SSE_SLOW_CLIENT' || connection.disconnected
      if (code === 'FST_SSE_SLOW_CLIENT' && connection.alwaysFast) problems.push(`${label}: a client that always read was dropped as slow`)
      if (code === 'FST_SSE_CLIENT_CLOSED' && !connection.disconnected) problems.push(`${label}: closed as if by the client`)
      if ((connection.stream.cursor !== undefined) !== connection.writesCursors) {
        problems.push(`${label}: ${connection.writesCursors ? 'no' : 'a'} cursor, where the model says otherwise`)
      }
      if (!connection.opened) {
        // Never answered (refused when its store answered, as the server was closing; or its client left first).
        if (connection.res.events.length > 0) problems.push(`${label}: events written to a stream never answered`)
        continue
      }
      problems.push(...this.toldProblems(connection).map((problem) => `${label}: ${problem}`))
      const ownProblem = sequenceProblem(connection.received().filter(isOwn), connection.own, prefixOnly)
      if (ownProblem !== undefined) problems.push(`${label}: own sends: ${ownProblem}`)
      for (const name of new Set(connection.joined.map((joined) => joined.name))) {
        const problem = this.options.check === 'exact'
          ? this.exactProblem(connection, name, prefixOnly)
          : this.positionsProblem(connection, name, prefixOnly)
        if (problem !== undefined) problems.push(`${label}, channel ${name}, ended ${String(code)}: ${problem}`)
      }
      problems.push(...this.idProblems(connection).map((problem) => `${label}: ${problem}`))
    }
    problems.push(...this.problems, ...this.finalStatsProblems())
    const unexpected = this.logs.filter((record) => record.level === 'error' || !record.msg.includes('fell behind'))
    if (unexpected.length > 0) problems.push(`logged: ${JSON.stringify(unexpected.map((record) => record.msg))}`)
    return problems
  }

  /**
   * An id is never dropped: a client that came back with an id that is not a whole cursor, to a stream that writes
   * cursors, is told `missed` on every channel the id does not place (it never starts one now, in silence).
   */
  private toldProblems (connection: Connection): string[] {
    const id = connection.lastEventId
    if (id === undefined || !connection.writesCursors || isCursor(id)) return []
    return CHANNEL_NAMES.flatMap((name) => {
      const first = connection.joined.find((joined) => joined.name === name)
      return first !== undefined && first.from === undefined ? [`channel ${name} started now, its id ${JSON.stringify(id)} dropped in silence`] : []
    })
  }

  /**
   * A connection's items of one channel (its own sends in their place among them) against what the model says,
   * exactly: once, in order, all of them (a prefix, for a client that went away or was dropped). A connection closed
   * while it held a start may get, after all it was owed, the first of the channel's events published after the
   * close; one that left the channel while it held a start, only part of what was owed, in order.
   */
  private exactProblem (connection: Connection, name: ChannelName, prefixOnly: boolean): string | undefined {
    const received = this.ofChannel(connection.received(), name)
    const expected = this.ofChannel(connection.expected, name)
    const late = connection.heldAtClose
      ? (this.published.get(name) as Published[]).filter((record) => record.step > connection.stoppedAt &&
          record.failed !== true && this.passes(connection.user, record.to)).map((record): Item => `n${record.n}`)
      : []
    if (connection.joined.some((joined) => joined.name === name && joined.leftWhileHeld === true)) {
      const allowed = [...expected, ...late]
      let at = 0
      for (const item of received) {
        while (at < allowed.length && allowed[at] !== item) at++
        if (at++ === allowed.length) return `received [${received.join(' ')}], not in the order of [${allowed.join(' ')}]`
      }
      return undefined
    }
    if (late.length > 0 && received.length > expected.length) {
      const extra = received.slice(expected.length)
      if (extra.every((item, i) => item === late[i])) return sequenceProblem(received.slice(0, expected.length), expected, false)
    }
    return sequenceProblem(received, expected, prefixOnly)
  }

  /** The items of one channel, with the connection's own sends in their place among them. */
  private ofChannel (items: Item[], name: ChannelName): Item[] {
    return items.filter((item) => isOwn(item) || item === `missed:${name}` || (isEvent(item) && this.record(Number(item.slice(1))).channel === name))
  }

  /**
   * The id of each event, as the client keeps it: on a stream of one channel, the one publish() gave; on a stream of
   * several, a cursor that resumes each channel exactly after what the client had received of it by then (never
   * before it: a duplicate; never past the next event it was owed: a gap), and that keeps what the client came with
   * for channels the stream never took.
   */
  private idProblems (connection: Connection): string[] {
    const problems: string[] = []
    const events = connection.res.events
    const items = connection.received()
    const lastOf = new Map<ChannelName, Published>()
    const receivedOf = new Map<ChannelName, number>(CHANNEL_NAMES.map((name) => [name, 0]))
    const came = new Map(CHANNEL_NAMES.map((name) => [name, new StreamCursor(connection.lastEventId).resumeOf(name)]))
    // A stream of one channel that subscribes to more writes cursors from then on.
    let cursors = connection.route.list || (connection.lastEventId !== undefined && isCursor(connection.lastEventId))
    for (const [i, event] of events.entries()) {
      const item = items[i]
      if (isOwn(item)) {
        if (event.id !== undefined) problems.push(`${item} came with an id`)
        continue
      }
      const record = isEvent(item) ? this.record(Number(item.slice(1))) : undefined
      if (connection.writesCursors && event.id !== undefined && isCursor(event.id)) cursors = true
      if (!cursors) {
        if (record !== undefined && record.id !== event.id) problems.push(`${item} came with id ${String(event.id)}, publish() gave ${String(record.id)}`)
      } else if (event.id === undefined || !isCursor(event.id)) {
        problems.push(`${item} came with id ${String(event.id)}, not a cursor`)
      } else {
        problems.push(...this.cursorProblems(connection, event.id, item, record, lastOf, receivedOf, came))
      }
      if (record !== undefined) {
        lastOf.set(record.channel, record)
        receivedOf.set(record.channel, (receivedOf.get(record.channel) as number) + 1)
      }
    }
    return problems
  }

  /** The entries of the cursor of one event, against what the client had received before it. */
  private cursorProblems (connection: Connection, id: string, item: Item, record: Published | undefined,
    lastOf: Map<ChannelName, Published>, receivedOf: Map<ChannelName, number>, came: Map<ChannelName, ResumeFrom>): string[] {
    const problems: string[] = []
    const cursor = new StreamCursor(id)
    const own = record?.channel ?? (item.slice('missed:'.length) as ChannelName)
    for (const name of CHANNEL_NAMES) {
      // A cursor's entries are positions (undefined: the channel had none), never ids.
      const entry = cursor.resumeOf(name) as { position: string | undefined } | undefined
      const where = `the cursor of ${item} (${id}) has ${name} at ${entry === undefined ? 'absent' : String(entry.position)}`
      if (name === own) {
        // Its own event's position; a missed event's: none.
        const expected = record === undefined ? 'undefined' : String(record.position)
        if (entry === undefined || (entry.position === undefined ? expected !== 'undefined' : comparePositions(entry.position, expected) !== 0)) {
          problems.push(`${where}, its own event's position is ${expected}`)
        }
      } else if (connection.joined.every((joined) => joined.name !== name)) {
        // What the client's id placed is written on; what it could not place (an id told missed) cannot be.
        const placed = came.get(name)
        const given = placed !== undefined && 'id' in placed ? undefined : placed
        if (JSON.stringify(entry) !== JSON.stringify(given)) problems.push(`${where}, as it came: ${JSON.stringify(given)}`)
      } else {
        problems.push(...this.entryProblems(connection, name, entry, lastOf.get(name), receivedOf.get(name) as number, where))
      }
    }
    return problems
  }

  /** The entry of a channel the stream took, against the last of its events received before and the next one owed. */
  private entryProblems (connection: Connection, name: ChannelName, entry: { position: string | undefined } | undefined,
    last: Published | undefined, received: number, where: string): string[] {
    const position = entry?.position
    if (entry === undefined) {
      // Unsubscribed since, or subscribed later: whether it was by then, the model cannot tell.
      const stayed = connection.joined.every((joined) => joined.name !== name || !joined.left)
      return last !== undefined && stayed ? [`${where}, though ${name} was subscribed and its events received`] : []
    }
    if (last !== undefined && (position === undefined || comparePositions(position, last.position as string) < 0)) {
      return [`${where}, before n${last.n} (${String(last.position)}) the client had: a resume would repeat it`]
    }
    // A channel joined afresh once, of which nothing was received yet: placed from the moment it was joined, whether
    // it published since or not (a quiet channel), never before it: a resume would replay its history from before.
    const joins = connection.joined.filter((joined) => joined.name === name)
    const start = joins[0]?.newestAtStart
    if (last === undefined && joins.length === 1 && joins[0].from === undefined && start !== undefined &&
      (position === undefined || comparePositions(position, start) < 0)) {
      return [`${where}, before ${start}, where the channel stood when it was joined: a resume would replay what came before`]
    }
    let next: Published | undefined
    // Left while its stream held a start: what was held of it may not have been written, and is not owed then.
    if (connection.joined.some((joined) => joined.name === name && joined.leftWhileHeld === true)) return []
    if (this.options.check === 'exact') {
      const owed = this.ofChannel(connection.expected, name).filter(isEvent)
      next = owed[received] === undefined ? undefined : this.record(Number(owed[received].slice(1)))
    } else if (last !== undefined) {
      const owed = this.owedOf(connection, name)
      next = owed[owed.indexOf(last) + 1]
    }
    if (next !== undefined && position !== undefined && comparePositions(position, next.position as string) >= 0) {
      return [`${where}, at or past n${next.n} (${String(next.position)}), owed next and not received: a resume would skip it`]
    }
    return []
  }

  /** The publishes of a channel a connection's filter lets through, in the order of positions. */
  private owedOf (connection: Connection, name: ChannelName): Published[] {
    return (this.published.get(name) as Published[]).filter((record) => record.failed !== true && this.passes(connection.user, record.to))
      .sort((a, b) => comparePositions(a.position as string, b.position as string))
  }

  /**
   * A connection's events of one channel, against the order of positions: once each, in order, with no gap; from
   * exactly after where it resumed (its last id, or its position in the client's cursor), or from no earlier than
   * the publishes resolved before it subscribed and no later than the first one its own instance made after; to
   * every one resolved before its close, or all of them when the app closed at the end (not for a channel it left:
   * what the stream had then, up to the leave).
   */
  private positionsProblem (connection: Connection, name: ChannelName, prefixOnly: boolean): string | undefined {
    const [joined] = connection.joined.filter((one) => one.name === name)
    const records = (this.published.get(name) as Published[])
      .filter((record) => record.failed !== true).sort((a, b) => comparePositions(a.position as string, b.position as string))
    const owed = this.owedOf(connection, name)
    const events = connection.received().filter((item) => item === `missed:${name}` || (isEvent(item) && this.record(Number(item.slice(1))).channel === name))
    if (events.length === 0 && (prefixOnly || joined.left)) return undefined
    const missed = events[0] === `missed:${name}`
    const received = (missed ? events.slice(1) : events).map((item) => Number(item.slice(1)))
    const show = (): string => `received [${events.join(' ')}] of [${owed.map((record) => `n${record.n}`).join(' ')}]`
    const start = received.length === 0 ? -1 : owed.findIndex((record) => record.n === received[0])
    if (received.some((n, i) => owed[start + i]?.n !== n)) return `not the owed events in order, once, without a gap: ${show()}`
    const from = joined.from
    let first: number
    if (from !== undefined) {
      const cursor = 'id' in from
        // (records are in the order of positions: a repeated id stands for its newest event)
        ? records.findLast((record) => record.id === from.id)
        : from.position === undefined ? undefined : records.find((record) => comparePositions(record.position as string, from.position as string) === 0)
      const fromStart = !('id' in from) && from.position === undefined
      if (missed !== (cursor === undefined && !fromStart)) return `${missed ? '' : 'no '}missed event resuming from ${JSON.stringify(from)}: ${show()}`
      first = cursor === undefined ? 0 : owed.findIndex((record) => comparePositions(record.position as string, cursor.position as string) > 0)
      if (first === -1) first = owed.length
      if (received.length > 0 && start !== first) return `not resumed right after ${JSON.stringify(from)}: ${show()}`
    } else {
      if (missed) return `a missed event without a last id: ${show()}`
      const earliest = owed.findLastIndex((record) => joined.resolvedAtStart.has(record.n)) + 1
      const latest = owed.findIndex((record) => record.instance === connection.instance && record.step > joined.step)
      if (received.length > 0 && start < earliest) return `events published before it subscribed: ${show()}`
      if (received.length > 0 && latest !== -1 && start > latest) return `the first events published after it subscribed are missing: ${show()}`
      first = received.length > 0 ? start : latest === -1 ? owed.length : latest
    }
    if (prefixOnly || joined.left) return undefined
    const closedAt = connection.resolvedAtClose?.get(name)
    const due = owed.slice(first).filter((record) => closedAt === undefined || record.instance !== connection.instance
      ? closedAt === undefined
      : closedAt.has(record.n))
    const last = received.length === 0 ? first - 1 : start + received.length - 1
    const late = due.find((record) => owed.indexOf(record) > last)
    if (late !== undefined) return `n${late.n}, published before its close, is missing: ${show()}`
    return undefined
  }

  /**
   * What app.sse.stats() says at any step: the streams of each instance not ended yet are open, each the subscriber
   * of the channels it joined and did not leave.
   */
  statsProblems (): string[] {
    return this.instances.flatMap(({ channels }, instance) => {
      const stats = channels.stats()
      const connections = this.connections.filter((connection) => connection.instance === instance && !connection.stream.hasEnded)
      const problems: string[] = []
      const open = connections.filter((connection) => connection.opened).length
      if (stats.streams.open !== open) problems.push(`${stats.streams.open} open, ${open} answered and not ended`)
      const subscribed = connections.reduce((sum, connection) => sum + connection.joined.filter((joined) => !joined.left).length, 0)
      if (stats.channels.subscribers !== subscribed) {
        problems.push(`${stats.channels.subscribers} subscribers, ${subscribed} subscriptions of streams not ended`)
      }
      return problems.map((problem) => `instance ${instance}: stats say ${problem}`)
    })
  }

  /**
   * What app.sse.stats() says once every connection is over: each stream opened and closed for the reason its signal
   * gives; the events and bytes sent are those the clients took, when every client read all (the server ended every
   * stream), and at least those otherwise; replays by outcome, at most one for each resume.
   */
  finalStatsProblems (): string[] {
    return this.instances.flatMap(({ channels }, instance) => {
      const stats = channels.stats()
      const connections = this.connections.filter((connection) => connection.instance === instance && connection.opened)
      const problems: string[] = []
      const closed: Record<string, number> = { ...stats.streams.closed }
      for (const connection of connections) closed[(connection.stream.signal.reason as { code: string }).code]--
      if (Object.values(closed).some((n) => n !== 0)) problems.push(`closed by code off by ${JSON.stringify(closed)}`)
      if (stats.streams.opened !== connections.length || stats.streams.open !== 0) {
        problems.push(`${stats.streams.opened} opened of ${connections.length}, ${stats.streams.open} open`)
      }
      const complete = connections.every((connection) => !connection.disconnected &&
        ['FST_SSE_STREAM_ENDED', 'FST_SSE_SERVER_CLOSING'].includes((connection.stream.signal.reason as { code: string }).code))
      const events = connections.reduce((sum, connection) => sum + connection.res.events.length, 0)
      const bytes = connections.reduce((sum, connection) => sum + connection.res.takenBytes, 0)
      if (complete ? stats.events.sent !== events : stats.events.sent < events) problems.push(`${stats.events.sent} events sent, ${events} received`)
      if (complete ? stats.bytes.sent !== bytes : stats.bytes.sent < bytes) problems.push(`${stats.bytes.sent} bytes sent, ${bytes} taken`)
      // A replay for each channel a stream resumed, by id or by its cursor.
      const resumes = this.connections.filter((connection) => connection.instance === instance)
        .flatMap((connection) => connection.joined.filter((joined) => joined.from !== undefined))
      const missed = connections.reduce((sum, connection) => sum + connection.received().filter((item) => item.startsWith('missed')).length, 0)
      const { resumed, missed: missedReplays, failed } = stats.replays
      if (resumed + missedReplays + failed > resumes.length || missedReplays < missed) {
        problems.push(`replays ${JSON.stringify(stats.replays)} for ${resumes.length} resumes, ${missed} of them missed`)
      }
      if (stats.channels.count !== 0 || stats.channels.subscribers !== 0) problems.push(`channels left ${JSON.stringify(stats.channels)}`)
      return problems.map((problem) => `instance ${instance}: stats say ${problem}`)
    })
  }

  /**
   * Publishes a last event on each instance to each channel that open connections there are subscribed to, and waits
   * until each of those channels is handed it: every event that will ever reach them came before it.
   */
  async settle (): Promise<void> {
    // A stream that ended (dropped as slow) has let go of its channels: they may no longer be handed anything.
    const open = this.connections.filter((connection) => connection.accepting && !connection.stream.hasEnded).flatMap((connection) =>
      connection.joined.filter((joined) => !joined.left && !joined.channel.closed).map((joined) => ({ instance: connection.instance, joined, connection })))
    const targets = new Map<string, { instance: number, name: ChannelName }>()
    for (const { instance, joined } of open) targets.set(`${instance} ${joined.name}`, { instance, name: joined.name })
    const before = this.nextN
    for (const { instance, name } of targets.values()) this.publish(instance, name, ['ann'], false, false, false)
    await within(Promise.all(this.publishing), 'the last publishes to resolve', 5000)
    const deadline = Date.now() + 5000
    for (const { instance, joined, connection } of open) {
      const last = (this.published.get(joined.name) as Published[])
        .find((record) => record.n >= before && record.instance === instance) as Published
      const live = (): string | undefined => (joined.channel as unknown as { livePosition: string | undefined }).livePosition
      // Its stream may be dropped meanwhile (a slow client that the last publish put over the limit).
      while (!connection.stream.hasEnded && (live() === undefined || comparePositions(live() as string, last.position as string) < 0)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for channel ${joined.name} to be handed ${String(last.position)}`)
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
  }

  private passes (user: number, to: Recipient): boolean {
    const key = USERS[user]
    return key === undefined || key === to
  }

  /**
   * What a subscription resuming `from` gets first: its channel's retained events after it, or `missed` and all that
   * is retained; after a position of no event (`undefined`: the channel had none), all that is retained.
   */
  private replayOf (name: ChannelName, from: NonNullable<ResumeFrom>, key: Recipient | undefined): Item[] {
    const all = (this.published.get(name) as Published[]).filter((record) => record.failed !== true)
    const retained = all.slice(Math.max(0, all.length - this.options.history))
    const fromStart = !('id' in from) && from.position === undefined
    const at = 'id' in from
      ? retained.findLastIndex((record) => record.id === from.id)
      : retained.findLastIndex((record) => from.position !== undefined && comparePositions(record.position as string, from.position) === 0)
    const after = at === -1 ? retained : retained.slice(at + 1)
    const items: Item[] = at === -1 && !fromStart ? [`missed:${name}`] : []
    for (const record of after) if (key === undefined || key === record.to) items.push(`n${record.n}`)
    return items
  }
}

function isOwn (item: Item): boolean {
  return item.startsWith('own')
}

function isEvent (item: Item): item is `n${number}` {
  return item.startsWith('n')
}

function sequenceProblem (received: Item[], expected: Item[], prefixOnly: boolean): string | undefined {
  const same = prefixOnly
    ? received.length <= expected.length && received.every((item, i) => item === expected[i])
    : received.length === expected.length && received.every((item, i) => item === expected[i])
  return same ? undefined : `received [${received.join(' ')}], expected ${prefixOnly ? 'a prefix of ' : ''}[${expected.join(' ')}]`
}

const noConnections = { add: () => {} } as unknown as ClosingConnections
// Channels without event schemas never ask for the app.
const noSchemas = new ChannelSchemas({} as unknown as FastifyInstance, JSON.stringify)

type Command = fc.AsyncCommand<object, World>

const user = fc.integer({ min: 0, max: USERS.length - 1 })

/** The tag of a user's streams. */
function tagOf (user: number): string {
  return `user:${user}`
}
const instance = fc.integer({ min: 0, max: 1 })
const channelName = fc.constantFrom(...CHANNEL_NAMES)

export class Subscribe implements Command {
  constructor (readonly user: number, readonly instance: number, readonly route: Route, readonly bogusId: boolean) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed || world.open(this.user) !== undefined) return
    world.subscribe(this.user, world.instance(this.instance), this.route, this.bogusId ? 'never-sent' : undefined)
  }

  toString (): string {
    const route = this.route.list ? `[${this.route.names.join(',')}]` : this.route.names[0]
    return `subscribe(${this.user}, @${this.instance}, ${route}${this.bogusId ? ', bogus id' : ''})`
  }
}

/**
 * The client comes back with the last id it got, to the same route; `drop`: its connection breaks now (an
 * EventSource's reconnect). `mangle`: what happened to the id on its way (cut short at `at`, a plain id from
 * publish(), an entry given twice).
 */
export class Resume implements Command {
  constructor (readonly user: number, readonly instance: number, readonly drop: boolean, readonly mangle: Mangle = 'as it was',
    readonly at = 0) {}

  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const previous = world.latest[this.user]
    if (world.appClosed || previous === undefined) return
    if (this.drop && !previous.res.gone) {
      previous.disconnected = true
      previous.accepting = false
      previous.res.disconnect()
    } else if (!previous.res.gone) {
      return
    }
    const plain = [...world.published.values()].flat().findLast((record) => record.resolved && sendsBack(record.id as string))?.id
    world.subscribe(this.user, world.instance(this.instance), previous.route, mangled(previous.cursor(), this.mangle, this.at, plain))
  }

  toString (): string {
    return `${this.drop ? 'reconnect' : 'resume'}(${this.user}, @${this.instance}${this.mangle === 'as it was' ? '' : `, ${this.mangle} ${this.at}`})`
  }
}

/** `stream.subscribe(channel)` on the user's open stream (a POST that joins a room); again after a leave: anew. */
export class Join implements Command {
  constructor (readonly user: number, readonly channel: ChannelName) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.open(this.user)
    if (connection === undefined || connection.subscribed(this.channel) !== undefined) return
    // The positions check follows one subscription a channel per connection.
    if (world.options.check === 'positions' && connection.joined.some((joined) => joined.name === this.channel)) return
    world.join(connection, this.channel, 'subscribe')
  }

  toString (): string { return `subscribe(${this.user}, ${this.channel})` }
}

/** `stream.unsubscribe(channel)` on the user's open stream. */
export class Leave implements Command {
  constructor (readonly user: number, readonly channel: ChannelName) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.open(this.user)
    const joined = connection?.subscribed(this.channel)
    if (connection !== undefined && joined !== undefined) world.leave(connection, joined)
  }

  toString (): string { return `unsubscribe(${this.user}, ${this.channel})` }
}

export class Publish implements Command {
  constructor (readonly instance: number, readonly channel: ChannelName, readonly recipients: Recipient[],
    readonly reuse: boolean, readonly ids: boolean | string[], readonly big: boolean) {}

  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed) return
    world.publish(world.instance(this.instance), this.channel, this.recipients, this.reuse, this.ids, this.big)
  }

  toString (): string {
    const ids = this.ids === false ? '' : this.ids === true ? ', own ids' : `, ids ${JSON.stringify(this.ids)}`
    return `publish(@${this.instance}, ${this.channel}, [${this.recipients.join(',')}]${this.reuse ? ', reused' : ''}` +
      `${ids}${this.big ? ', big' : ''})`
  }
}

export class Send implements Command {
  constructor (readonly user: number, readonly big: boolean) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.open(this.user)
    if (connection !== undefined) world.send(connection, this.big)
  }

  toString (): string { return `send(${this.user}${this.big ? ', big' : ''})` }
}

export class SetMode implements Command {
  constructor (readonly user: number, readonly mode: ReadMode) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.latest[this.user]
    if (connection !== undefined && !connection.res.gone) world.setMode(connection, this.mode)
  }

  toString (): string { return `${this.mode}(${this.user})` }
}

export class Disconnect implements Command {
  constructor (readonly user: number) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.latest[this.user]
    if (connection === undefined || connection.res.gone) return
    connection.disconnected = true
    connection.accepting = false
    connection.res.disconnect()
  }

  toString (): string { return `disconnect(${this.user})` }
}

export class CloseStream implements Command {
  constructor (readonly user: number) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.open(this.user)
    if (connection === undefined) return
    connection.stopAccepting(world)
    connection.stream.close()
  }

  toString (): string { return `stream.close(${this.user})` }
}

export class CloseChannel implements Command {
  constructor (readonly instance: number, readonly channel: ChannelName) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (!world.appClosed) world.closeChannel(world.instance(this.instance), this.channel)
  }

  toString (): string { return `channel.close(@${this.instance}, ${this.channel})` }
}

export class CloseApp implements Command {
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (!world.appClosed) world.closeApp()
  }

  toString (): string { return 'app.close()' }
}

/**
 * Lets the store catch up: a last publish to each channel with open connections, waited for until each is handed it
 * (with Redis, a client then has events, and a cursor, to resume with).
 */
export class Settle implements Command {
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (!world.appClosed) await world.settle()
  }

  toString (): string { return 'settle()' }
}

export class Wait implements Command {
  constructor (readonly turns: number) {}
  check (): boolean { return true }
  async run (): Promise<void> {
    for (let i = 0; i < this.turns; i++) await new Promise((resolve) => setImmediate(resolve))
  }

  toString (): string { return `wait(${this.turns})` }
}

/**
 * `app.sse.tagged(tag).subscribe(channel, { filter })` sent from an instance: every stream of the user, on every
 * instance, carries the channel from when it resolves (the filter travels by its name).
 */
export class TaggedJoin implements Command {
  constructor (readonly user: number, readonly instance: number, readonly channel: ChannelName) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const streams = world.tagged(this.user)
    if (world.appClosed || streams === undefined || streams.some((connection) => connection.subscribed(this.channel) !== undefined)) return
    if (world.options.check === 'positions' && streams.some((connection) => connection.joined.some((joined) => joined.name === this.channel))) return
    await world.steerable()
    for (const connection of streams) world.join(connection, this.channel, 'tagged')
    const { channels } = world.instances[world.instance(this.instance)]
    const key = USERS[this.user]
    const result = await channels.tagged(tagOf(this.user)).subscribe(channels.channel(this.channel),
      key === undefined ? undefined : { filter: channels.steering.filters.named(`to:${key}`) })
    if (result.streams !== streams.length || result.unanswered.length > 0) {
      world.problems.push(`step ${world.step}: ${this.toString()} reached ${JSON.stringify(result)} of ${streams.length} streams`)
    }
    count('tagged subscribes', streams.length)
  }

  toString (): string { return `tagged(${this.user}).subscribe(@${this.instance}, ${this.channel})` }
}

/** `app.sse.tagged(tag).unsubscribe(channel)` sent from an instance. */
export class TaggedLeave implements Command {
  constructor (readonly user: number, readonly instance: number, readonly channel: ChannelName) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const streams = world.tagged(this.user)
    if (world.appClosed || streams === undefined) return
    await world.steerable()
    const leaving = streams.filter((connection) => connection.subscribed(this.channel) !== undefined)
    for (const connection of leaving) world.leave(connection, connection.subscribed(this.channel) as Joined, true)
    const { channels } = world.instances[world.instance(this.instance)]
    const result = await channels.tagged(tagOf(this.user)).unsubscribe(channels.channel(this.channel))
    if (result.streams !== leaving.length || result.unanswered.length > 0) {
      world.problems.push(`step ${world.step}: ${this.toString()} reached ${JSON.stringify(result)} of ${leaving.length} streams`)
    }
  }

  toString (): string { return `tagged(${this.user}).unsubscribe(@${this.instance}, ${this.channel})` }
}

/** `app.sse.tagged(tag).close()` sent from an instance: each of the user's streams gets a retry:, then ends. */
export class TaggedClose implements Command {
  constructor (readonly user: number, readonly instance: number) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const streams = world.tagged(this.user)
    if (world.appClosed || streams === undefined) return
    await world.steerable()
    for (const connection of streams) connection.stopAccepting(world)
    const result = await world.instances[world.instance(this.instance)].channels.tagged(tagOf(this.user)).close()
    if (result.streams !== streams.length || result.unanswered.length > 0) {
      world.problems.push(`step ${world.step}: ${this.toString()} reached ${JSON.stringify(result)} of ${streams.length} streams`)
    }
    count('closed by tag', streams.length)
  }

  toString (): string { return `tagged(${this.user}).close(@${this.instance})` }
}

/** `app.sse.tagged(tag).count()` from an instance: the user's streams not closed, on every instance. */
export class TaggedCount implements Command {
  constructor (readonly user: number, readonly instance: number) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed) return
    await world.steerable()
    const open = (): number => world.connections.filter((connection) => connection.user === this.user && !connection.stream.closed).length
    const before = open()
    const counted = await world.instances[world.instance(this.instance)].channels.tagged(tagOf(this.user)).count()
    // A client dropped as slow meanwhile (a write flushed while the count was asked) counts no more.
    if (counted !== before && counted !== open()) world.problems.push(`step ${world.step}: ${this.toString()} is ${counted}, ${before} streams are open`)
  }

  toString (): string { return `tagged(${this.user}).count(@${this.instance})` }
}

// A route of one channel, or a list of one to three of them, in any order.
const route = fc.oneof(
  channelName.map((name): Route => ({ names: [name], list: false })),
  fc.shuffledSubarray([...CHANNEL_NAMES], { minLength: 1 }).map((names): Route => ({ names, list: true })))
const subscribe = fc.tuple(user, instance, route, fc.boolean(), fc.boolean())
  .map(([u, i, r, a, b]) => new Subscribe(u, i, r, a && b))
const mangle = fc.constantFrom<Mangle>('as it was', 'as it was', 'as it was', 'cut', 'plain', 'doubled')
const resume = fc.tuple(user, instance, fc.boolean(), mangle, fc.nat()).map(([u, i, drop, how, at]) => new Resume(u, i, drop, how, at))
const ids = fc.oneof({ weight: 4, arbitrary: fc.boolean() }, { weight: 1, arbitrary: fc.array(anyId, { minLength: 1, maxLength: 3 }) })
const publish = fc.tuple(instance, channelName, fc.array(fc.constantFrom<Recipient>('ann', 'bob'), { minLength: 1, maxLength: 8 }),
  fc.boolean(), ids, fc.boolean()).map(([i, c, to, reuse, own, big]) => new Publish(i, c, to, reuse, own, big))
const send = fc.tuple(user, fc.boolean()).map(([u, big]) => new Send(u, big))
const setMode = fc.tuple(user, fc.constantFrom<ReadMode>('fast', 'slow', 'stalled', 'stalled')).map(([u, mode]) => new SetMode(u, mode))
const wait = fc.integer({ min: 1, max: 3 }).map((turns) => new Wait(turns))
const join = fc.tuple(user, channelName).map(([u, c]) => new Join(u, c))
const leave = fc.tuple(user, channelName).map(([u, c]) => new Leave(u, c))
const taggedJoin = fc.tuple(user, instance, channelName).map(([u, i, c]) => new TaggedJoin(u, i, c))
const taggedLeave = fc.tuple(user, instance, channelName).map(([u, i, c]) => new TaggedLeave(u, i, c))

// Repeated entries weigh more: most steps subscribe, publish, send and let time pass; few close things.
export const commands = fc.commands([
  subscribe, subscribe, subscribe, resume, resume, resume, publish, publish, publish, publish, publish, send, send, send,
  setMode, setMode, setMode, wait, wait, wait, join, join, leave, fc.constant(new Settle()), taggedJoin, taggedJoin, taggedLeave,
  fc.tuple(user, instance).map(([u, i]) => new TaggedClose(u, i)),
  fc.tuple(user, instance).map(([u, i]) => new TaggedCount(u, i)),
  user.map((u) => new Disconnect(u)),
  user.map((u) => new CloseStream(u)),
  fc.tuple(instance, channelName).map(([i, c]) => new CloseChannel(i, c)),
  fc.constant(new CloseApp())
], { maxCommands: 60, size: '+1' })

/**
 * An interleaving: history published before any subscriber (which channels then keep quiet, or not, is the commands'
 * choice), then the commands.
 */
export const interleavings = fc.tuple(fc.array(publish, { maxLength: 3 }), commands)

/**
 * The steps, each counting itself when it runs (fast-check walks the whole list before it runs any), then checking
 * what the stats say once it has run.
 */
function * counted (steps: Iterable<Command>, world: World): Iterable<Command> {
  for (const step of steps) {
    yield {
      check: (model) => step.check(model),
      run: async (model, real) => {
        world.step++
        await step.run(model, real)
        const problems = real.statsProblems()
        if (problems.length > 0) throw new Error(`after ${step.toString()}: ${problems.join('; ')}`)
      },
      toString: () => step.toString()
    }
  }
}

/** What the runs exercised, so that a test can say its search reached the cases that matter. */
export const tally: Record<string, number> = {}

function count (what: string, n = 1): void {
  tally[what] = (tally[what] ?? 0) + n
}

/** Runs one generated interleaving and throws, with what each connection got, if the model disagrees. */
export async function runInterleaving (options: ModelOptions, [history, steps]: [Command[], Iterable<Command>]): Promise<void> {
  const world = new World(options, await options.makeStores())
  for (const publish of history) await publish.run({}, world)
  await fc.asyncModelRun(() => ({ model: {}, real: world }), counted(steps, world))
  await world.finish()
  const problems = world.check()
  if (problems.length > 0) throw new Error(problems.join('\n'))
  for (const connection of world.connections) {
    const code = (connection.stream.signal.reason as { code: string }).code
    count(`${code}${connection.alwaysFast ? ' (always fast)' : ''}`)
    count('events received', connection.received().length)
    if (connection.writesCursors) count('streams of cursors')
    if (!connection.opened) count('never answered')
    // Channels joined afresh with history before them, that the client got nothing of: quiet ones.
    const quiet = connection.joined.filter((joined) => joined.from === undefined && joined.newestAtStart !== undefined &&
      !connection.received().some((item) => isEvent(item) && world.record(Number(item.slice(1))).channel === joined.name))
    count('quiet channels with history', quiet.length)
    if (connection.joined.some((joined) => joined.left)) count('unsubscribed')
    for (const { from } of connection.joined) {
      if (from === undefined) continue
      const kind = 'id' in from
        ? from.id === '\n' ? 'told: its id did not place the channel' : 'resumed by id'
        : from.position === undefined ? 'resumed from the start' : 'resumed by cursor'
      const missed = connection.received().includes(`missed:${connection.joined.find((joined) => joined.from === from)?.name as ChannelName}`)
      count(`${kind}: ${missed ? 'missed' : 'found'}`)
    }
  }
}
