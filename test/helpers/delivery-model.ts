import fc from 'fast-check'
import { once } from 'node:events'
import type { EventToStore, SseStore, StoredEvent } from '../../lib/store'
import type { Channel } from '../../lib/channel'
import type { RawResponse } from '../../lib/event-stream'
import { EventStream } from '../../lib/event-stream'
import { OpenStreams } from '../../lib/open-streams'
import type { ClosingConnections } from '../../lib/closing-connections'
import { ChannelSchemas } from '../../lib/channel-schemas'
import type { FastifyInstance } from 'fastify'
import { Channels } from '../../lib/channels'
import { Stats } from '../../lib/stats'
import { MISSED_EVENT } from '../../lib/subscription'
import { comparePositions } from '../../lib/position'
import { FakeResponse, recordingLogger, type LoggedRecord, type ReadMode } from './fake-response'
import { within } from './wait'

// A model-based test of the delivery core: random interleavings of subscribe (fresh, or resuming by Last-Event-ID),
// publish (single, bursts in one tick, one message object reused), the stream's own send(), client reads, stalls
// and disconnects, stream, channel and app close — with no waiting between them unless a `wait` says so — run
// against real EventStreams, Channels and a store, over fake responses whose clients the test drives. A small
// reference model says what each connection must have received: compared exactly for a connection the server
// ended, as a prefix for one that went away or was dropped as slow.

export const USERS = [undefined, 'ann', 'bob', undefined] as const
const BIG = 'x'.repeat(700)
const CHANNEL_NAMES = ['a', 'b'] as const
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
}

interface Published {
  n: number
  to: Recipient
  /** The id publish() resolved to; the publisher's own when `own` is set. */
  id: string | undefined
  own: string | undefined
  position: string | undefined
  instance: number
  /** The step of the run in which publish() was called; resolved: whether it has. */
  step: number
  resolved: boolean
  failed?: boolean
}

type Item = `n${number}` | `own${number}` | 'missed'

class Connection {
  readonly user: number
  readonly instance: number
  readonly channelName: ChannelName
  readonly channel: Channel
  readonly res: FakeResponse
  readonly stream: EventStream
  readonly lastEventId: string | undefined
  /** What it must receive, in order (`exact`): the model appends while `accepting`. */
  readonly expected: Item[] = []
  /** Its own sends, in order. */
  readonly own: Item[] = []
  /** `positions`: the step it subscribed in, and the publishes resolved by then (and by its close). */
  readonly step: number
  readonly resolvedAtStart: Set<number>
  resolvedAtClose: Set<number> | undefined
  accepting = true
  alwaysFast = true
  disconnected = false

  constructor (world: World, user: number, instance: number, channelName: ChannelName, channel: Channel, res: FakeResponse,
    stream: EventStream, lastEventId: string | undefined) {
    this.user = user
    this.instance = instance
    this.channelName = channelName
    this.channel = channel
    this.res = res
    this.stream = stream
    this.lastEventId = lastEventId
    this.step = world.step
    this.resolvedAtStart = world.resolved(channelName)
  }

  /** The model stops appending to it: the server is closing it. */
  stopAccepting (world: World): void {
    if (!this.accepting) return
    this.accepting = false
    if (!this.disconnected) this.resolvedAtClose = world.resolved(this.channelName)
  }

  received (): Item[] {
    return this.res.events.map((event): Item => {
      if (event.event === MISSED_EVENT) return 'missed'
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
  openStreams: OpenStreams
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
  // One message object for every publish that reuses it, as an app with a row buffer would.
  readonly reused: { data: { to: Recipient, n: number, pad?: string }, id?: string } = { data: { to: 'ann', n: -1 } }
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
        openStreams: new OpenStreams(0, options.maxBufferedBytes, 0, stats),
        channels: new Channels(positioned, JSON.stringify, this.log, noSchemas, stats)
      }
    })
  }

  /** The store, telling the model the position it gave each publish (publish() resolves to the id only). */
  private recordingPositions (store: SseStore): SseStore {
    const record = (channel: string, event: EventToStore, stored: StoredEvent): StoredEvent => {
      const n = (JSON.parse(event.snapshot) as { data: { n: number } }).data.n
      const published = (this.published.get(channel as ChannelName) as Published[]).find((p) => p.n === n) as Published
      published.position = stored.position
      return stored
    }
    const wrapped: SseStore = {
      append: (channel, event) => {
        const stored = store.append(channel, event)
        return stored instanceof Promise ? stored.then((value) => record(channel, event, value)) : record(channel, event, stored)
      },
      readAfter: (channel, lastEventId) => store.readAfter(channel, lastEventId),
      listen: (channel, listener) => store.listen(channel, listener),
      unlisten: (channel, listener) => store.unlisten(channel, listener),
      close: () => store.close()
    }
    if (store.head !== undefined) wrapped.head = (channel) => (store.head as NonNullable<SseStore['head']>).call(store, channel)
    return wrapped
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

  subscribe (user: number, instance: number, channelName: ChannelName, lastEventId: string | undefined): void {
    const { openStreams, channels } = this.instances[instance]
    const res = new FakeResponse()
    const stream = new EventStream(res as unknown as RawResponse, this.log, lastEventId, JSON.stringify, openStreams)
    stream.open(200, {}, undefined, false)
    const channel = channels.channel(channelName)
    const connection = new Connection(this, user, instance, channelName, channel, res, stream, lastEventId)
    this.connections.push(connection)
    this.latest[user] = connection
    if (lastEventId !== undefined) connection.expected.push(...this.replayOf(channelName, lastEventId, USERS[user]))
    const key = USERS[user]
    channel.subscribe(stream, lastEventId, key === undefined ? undefined : (event) => (event.data as Published).to === key)
  }

  publish (instance: number, channelName: ChannelName, recipients: Recipient[], reuse: boolean, ownIds: boolean,
    big: boolean): void {
    const channel = this.instances[instance].channels.channel(channelName)
    for (const to of recipients) {
      const n = this.nextN++
      const record: Published = {
        n, to, id: undefined, own: ownIds ? `own-id-${n}` : undefined, position: undefined, instance, step: this.step, resolved: false
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
      this.settling.push(channel.publish(message).then((id) => {
        record.id = id
        record.resolved = true
      }, (error: Error) => {
        // A publish still on its way when the app closes may fail: it was not published, and nobody is owed it.
        if (!this.appClosed) throw error
        record.failed = true
      }))
      for (const connection of this.connections) {
        if (connection.accepting && connection.channel === channel && this.passes(connection.user, to)) {
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
      if (connection.channel === channel) connection.stopAccepting(this)
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
    for (const connection of this.connections) connection.res.setMode('fast')
    if (!this.appClosed) {
      // Every publish resolved, and delivered to every instance: the close then owes every connection all of them.
      await within(Promise.all(this.settling), 'every publish to resolve', 5000)
      await this.untilDelivered()
      this.closeApp()
    }
    await within(Promise.all(this.settling), 'the app and its channels to close', 8000).catch((error: Error) => {
      throw new Error(`${error.message}; streams not ended: ${this.describeOpen()}`)
    })
    await within(Promise.all(this.connections.map(async (connection) => {
      if (!connection.res.gone) await once(connection.res, 'close')
    })), 'every connection to close', 5000)
  }

  /** The connections whose stream has not ended, and what it waits for. */
  private describeOpen (): string {
    return this.connections.filter((connection) => !connection.stream.hasEnded).map((connection) => {
      const subscription = connection.stream.subscriptions[0]
      const channel = connection.channel as unknown as { livePosition?: string, publishedPosition?: string }
      return `user ${connection.user} @${connection.instance} ${connection.channelName}: replaying ` +
        `${String(subscription?.replaying)}, channel live ${String(channel.livePosition)} published ` +
        `${String(channel.publishedPosition)}, client ${connection.res.mode}`
    }).join('; ')
  }

  /** Why each connection's stream ended, and whether what it received is what the model says. */
  check (): string[] {
    const problems: string[] = []
    for (const [index, connection] of this.connections.entries()) {
      const label = `connection ${index} (user ${connection.user} on instance ${connection.instance}, channel ` +
        `${connection.channelName}, last id ${String(connection.lastEventId)})`
      const code = (connection.stream.signal.reason as { code?: string } | undefined)?.code
      // A client that went away may be ended by the server before its close is noticed.
      const prefixOnly = code === 'FST_SSE_SLOW_CLIENT' || connection.disconnected
      if (code === 'FST_SSE_SLOW_CLIENT' && connection.alwaysFast) problems.push(`${label}: a client that always read was dropped as slow`)
      if (code === 'FST_SSE_CLIENT_CLOSED' && !connection.disconnected) problems.push(`${label}: closed as if by the client`)
      const problem = this.options.check === 'exact'
        ? sequenceProblem(connection.received(), connection.expected, prefixOnly)
        : this.positionsProblem(connection, prefixOnly)
      if (problem !== undefined) problems.push(`${label}, ended ${String(code)}: ${problem}`)
      for (const event of connection.res.events) {
        if (event.event === MISSED_EVENT || event.data.startsWith('own')) continue
        const n = (JSON.parse(event.data) as { n: number }).n
        const record = this.published.get(connection.channelName)?.find((published) => published.n === n)
        if (record?.id !== event.id) problems.push(`${label}: event n${n} came with id ${String(event.id)}, publish() gave ${String(record?.id)}`)
      }
    }
    problems.push(...this.finalStatsProblems())
    const unexpected = this.logs.filter((record) => record.level === 'error' || !record.msg.includes('fell behind'))
    if (unexpected.length > 0) problems.push(`logged: ${JSON.stringify(unexpected.map((record) => record.msg))}`)
    return problems
  }

  /**
   * A connection's events, against the order of positions: once each, in order, with no gap; from exactly after its
   * last id, or from no earlier than the publishes resolved before it subscribed and no later than the first one its
   * own instance made after; to every one resolved before its close, or all of them when the app closed at the end.
   * Its own sends, apart: all of them, in order.
   */
  private positionsProblem (connection: Connection, prefixOnly: boolean): string | undefined {
    const records = (this.published.get(connection.channelName) as Published[])
      .filter((record) => record.failed !== true).sort((a, b) => comparePositions(a.position as string, b.position as string))
    const owed = records.filter((record) => this.passes(connection.user, record.to))
    const items = connection.received()
    const own = items.filter((item) => item.startsWith('own'))
    const ownProblem = sequenceProblem(own, connection.own, prefixOnly)
    if (ownProblem !== undefined) return `own sends: ${ownProblem}`
    const events = items.filter((item) => !item.startsWith('own'))
    if (events.length === 0 && prefixOnly) return undefined
    const missed = events[0] === 'missed'
    const received = (missed ? events.slice(1) : events).map((item) => Number(item.slice(1)))
    const show = (): string => `received [${events.join(' ')}] of [${owed.map((record) => `n${record.n}`).join(' ')}]`
    const start = received.length === 0 ? -1 : owed.findIndex((record) => record.n === received[0])
    if (received.some((n, i) => owed[start + i]?.n !== n)) return `not the owed events in order, once, without a gap: ${show()}`
    const cursor = records.find((record) => record.id === connection.lastEventId && connection.lastEventId !== undefined)
    let first: number
    if (connection.lastEventId !== undefined) {
      if (missed !== (cursor === undefined)) return `${missed ? '' : 'no '}missed event for last id ${connection.lastEventId}: ${show()}`
      first = cursor === undefined ? 0 : owed.findIndex((record) => comparePositions(record.position as string, cursor.position as string) > 0)
      if (first === -1) first = owed.length
      if (received.length > 0 && start !== first) return `not resumed right after its last id: ${show()}`
    } else {
      if (missed) return `a missed event without a last id: ${show()}`
      const earliest = owed.findLastIndex((record) => connection.resolvedAtStart.has(record.n)) + 1
      const latest = owed.findIndex((record) => record.instance === connection.instance && record.step > connection.step)
      if (received.length > 0 && start < earliest) return `events published before it subscribed: ${show()}`
      if (received.length > 0 && latest !== -1 && start > latest) return `the first events published after it subscribed are missing: ${show()}`
      first = received.length > 0 ? start : latest === -1 ? owed.length : latest
    }
    if (prefixOnly) return undefined
    const closedAt = connection.resolvedAtClose
    const due = owed.slice(first).filter((record) => closedAt === undefined || record.instance !== connection.instance
      ? closedAt === undefined
      : closedAt.has(record.n))
    const last = received.length === 0 ? first - 1 : start + received.length - 1
    const late = due.find((record) => owed.indexOf(record) > last)
    if (late !== undefined) return `n${late.n}, published before its close, is missing: ${show()}`
    return undefined
  }

  /**
   * What app.sse.stats() says at any step: the streams of each instance not ended yet are open, each its channel's
   * subscriber.
   */
  statsProblems (): string[] {
    return this.instances.flatMap(({ channels }, instance) => {
      const stats = channels.stats()
      const connections = this.connections.filter((connection) => connection.instance === instance && !connection.stream.hasEnded)
      const problems: string[] = []
      if (stats.streams.open !== connections.length) problems.push(`${stats.streams.open} open, ${connections.length} not ended`)
      if (stats.channels.subscribers !== connections.length) {
        problems.push(`${stats.channels.subscribers} subscribers, ${connections.length} streams not ended`)
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
      const connections = this.connections.filter((connection) => connection.instance === instance)
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
      const resumes = connections.filter((connection) => connection.lastEventId !== undefined)
      const missed = resumes.filter((connection) => connection.received()[0] === 'missed').length
      const { resumed, missed: missedReplays, failed } = stats.replays
      if (resumed + missedReplays + failed > resumes.length || missedReplays < missed) {
        problems.push(`replays ${JSON.stringify(stats.replays)} for ${resumes.length} resumes, ${missed} of them missed`)
      }
      if (stats.channels.count !== 0 || stats.channels.subscribers !== 0) problems.push(`channels left ${JSON.stringify(stats.channels)}`)
      return problems.map((problem) => `instance ${instance}: stats say ${problem}`)
    })
  }

  /**
   * Publishes a last event on each instance to each channel that has open connections there, and waits until each
   * of those channels is handed it: every event that will ever reach them came before it. A stream the server ended
   * (a slow client dropped) is not subscribed any more: its channel may no longer listen to the store.
   */
  private async untilDelivered (): Promise<void> {
    const open = this.connections.filter((connection) => connection.accepting && !connection.channel.closed &&
      !connection.stream.hasEnded)
    const targets = new Map<string, { instance: number, channelName: ChannelName }>()
    for (const { instance, channelName } of open) targets.set(`${instance} ${channelName}`, { instance, channelName })
    const before = this.nextN
    for (const { instance, channelName } of targets.values()) this.publish(instance, channelName, ['ann'], false, false, false)
    await within(Promise.all(this.settling), 'the last publishes to resolve', 5000)
    const deadline = Date.now() + 5000
    for (const connection of open) {
      const last = (this.published.get(connection.channelName) as Published[])
        .find((record) => record.n >= before && record.instance === connection.instance) as Published
      const live = (): string | undefined => (connection.channel as unknown as { livePosition: string | undefined }).livePosition
      while (live() === undefined || comparePositions(live() as string, last.position as string) < 0) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for channel ${connection.channelName} to be handed ${String(last.position)}`)
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
  }

  private passes (user: number, to: Recipient): boolean {
    const key = USERS[user]
    return key === undefined || key === to
  }

  /** What a subscriber resuming after `lastEventId` gets first: its channel's retained events after it, or `missed`. */
  private replayOf (channelName: ChannelName, lastEventId: string, key: Recipient | undefined): Item[] {
    const all = this.published.get(channelName) as Published[]
    const retained = all.slice(Math.max(0, all.length - this.options.history))
    const at = retained.findLastIndex((record) => record.id === lastEventId)
    const after = at === -1 ? retained : retained.slice(at + 1)
    const items: Item[] = at === -1 ? ['missed'] : []
    for (const record of after) if (key === undefined || key === record.to) items.push(`n${record.n}`)
    return items
  }
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
const instance = fc.integer({ min: 0, max: 1 })
const channelName = fc.constantFrom(...CHANNEL_NAMES)

export class Subscribe implements Command {
  constructor (readonly user: number, readonly instance: number, readonly channel: ChannelName, readonly bogusId: boolean) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed || world.open(this.user) !== undefined) return
    world.subscribe(this.user, world.instance(this.instance), this.channel, this.bogusId ? 'never-sent' : undefined)
  }

  toString (): string { return `subscribe(${this.user}, @${this.instance}, ${this.channel}${this.bogusId ? ', bogus id' : ''})` }
}

/** The client comes back with the last id it got; `drop`: its connection breaks now (an EventSource's reconnect). */
export class Resume implements Command {
  constructor (readonly user: number, readonly instance: number, readonly drop: boolean) {}
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
    world.subscribe(this.user, world.instance(this.instance), previous.channelName, previous.cursor())
  }

  toString (): string { return `${this.drop ? 'reconnect' : 'resume'}(${this.user}, @${this.instance})` }
}

export class Publish implements Command {
  constructor (readonly instance: number, readonly channel: ChannelName, readonly recipients: Recipient[],
    readonly reuse: boolean, readonly ownIds: boolean, readonly big: boolean) {}

  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed) return
    world.publish(world.instance(this.instance), this.channel, this.recipients, this.reuse, this.ownIds, this.big)
  }

  toString (): string {
    return `publish(@${this.instance}, ${this.channel}, [${this.recipients.join(',')}]${this.reuse ? ', reused' : ''}` +
      `${this.ownIds ? ', own ids' : ''}${this.big ? ', big' : ''})`
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

export class Wait implements Command {
  constructor (readonly turns: number) {}
  check (): boolean { return true }
  async run (): Promise<void> {
    for (let i = 0; i < this.turns; i++) await new Promise((resolve) => setImmediate(resolve))
  }

  toString (): string { return `wait(${this.turns})` }
}

const subscribe = fc.tuple(user, instance, channelName, fc.boolean(), fc.boolean())
  .map(([u, i, c, a, b]) => new Subscribe(u, i, c, a && b))
const resume = fc.tuple(user, instance, fc.boolean()).map(([u, i, drop]) => new Resume(u, i, drop))
const publish = fc.tuple(instance, channelName, fc.array(fc.constantFrom<Recipient>('ann', 'bob'), { minLength: 1, maxLength: 8 }),
  fc.boolean(), fc.boolean(), fc.boolean()).map(([i, c, to, reuse, own, big]) => new Publish(i, c, to, reuse, own, big))
const send = fc.tuple(user, fc.boolean()).map(([u, big]) => new Send(u, big))
const setMode = fc.tuple(user, fc.constantFrom<ReadMode>('fast', 'slow', 'stalled', 'stalled')).map(([u, mode]) => new SetMode(u, mode))
const wait = fc.integer({ min: 1, max: 3 }).map((turns) => new Wait(turns))

// Repeated entries weigh more: most steps subscribe, publish, send and let time pass; few close things.
export const commands = fc.commands([
  subscribe, subscribe, subscribe, resume, resume, resume, publish, publish, publish, publish, publish, send, send, send,
  setMode, setMode, setMode, wait, wait, wait,
  user.map((u) => new Disconnect(u)),
  user.map((u) => new CloseStream(u)),
  fc.tuple(instance, channelName).map(([i, c]) => new CloseChannel(i, c)),
  fc.constant(new CloseApp())
], { maxCommands: 60, size: '+1' })

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
export async function runInterleaving (options: ModelOptions, steps: Iterable<Command>): Promise<void> {
  const world = new World(options, await options.makeStores())
  await fc.asyncModelRun(() => ({ model: {}, real: world }), counted(steps, world))
  await world.finish()
  const problems = world.check()
  if (problems.length > 0) throw new Error(problems.join('\n'))
  for (const connection of world.connections) {
    const code = (connection.stream.signal.reason as { code: string }).code
    count(`${code}${connection.alwaysFast ? ' (always fast)' : ''}`)
    count('events received', connection.received().length)
    if (connection.lastEventId !== undefined) count(connection.received()[0] === 'missed' ? 'resumed: missed' : 'resumed: found')
  }
}
