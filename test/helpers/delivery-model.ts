import fc from 'fast-check'
import { once } from 'node:events'
import type { SseStore } from '../../lib/store'
import type { Channel } from '../../lib/channel'
import type { RawResponse } from '../../lib/event-stream'
import { EventStream } from '../../lib/event-stream'
import { OpenStreams } from '../../lib/open-streams'
import { Channels } from '../../lib/channels'
import { MISSED_EVENT } from '../../lib/subscription'
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
  makeStore: () => SseStore | Promise<SseStore>
  /**
   * False for a store whose live events come later than publish() resolves (Redis): the stream's own send() is
   * then not ordered against the events published just before it.
   */
  ownSendsOrdered: boolean
}

interface Published {
  n: number
  to: Recipient
  /** The id publish() resolved to; the publisher's own when `own` is set. */
  id: string | undefined
  own: string | undefined
}

type Item = `n${number}` | `own${number}` | 'missed'

class Connection {
  readonly user: number
  readonly channelName: ChannelName
  readonly channel: Channel
  readonly res: FakeResponse
  readonly stream: EventStream
  readonly lastEventId: string | undefined
  /** What it must receive, in order: the model appends while `accepting`. */
  readonly expected: Item[] = []
  accepting = true
  alwaysFast = true
  disconnected = false

  constructor (user: number, channelName: ChannelName, channel: Channel, res: FakeResponse, stream: EventStream,
    lastEventId: string | undefined) {
    this.user = user
    this.channelName = channelName
    this.channel = channel
    this.res = res
    this.stream = stream
    this.lastEventId = lastEventId
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

export class World {
  readonly options: ModelOptions
  readonly logs: LoggedRecord[] = []
  readonly log = recordingLogger(this.logs)
  readonly store: SseStore
  readonly openStreams: OpenStreams
  readonly channels: Channels
  readonly published = new Map<ChannelName, Published[]>(CHANNEL_NAMES.map((name) => [name, []]))
  readonly connections: Connection[] = []
  readonly latest: Array<Connection | undefined> = USERS.map(() => undefined)
  readonly settling: Array<Promise<unknown>> = []
  // One message object for every publish that reuses it, as an app with a row buffer would.
  readonly reused: { data: { to: Recipient, n: number, pad?: string }, id?: string } = { data: { to: 'ann', n: -1 } }
  appClosed = false
  private nextN = 0
  private nextOwn = 0

  constructor (options: ModelOptions, store: SseStore) {
    this.options = options
    this.store = store
    this.openStreams = new OpenStreams(0, options.maxBufferedBytes, 0)
    this.channels = new Channels(store, JSON.stringify, this.log)
  }

  open (user: number): Connection | undefined {
    const connection = this.latest[user]
    return connection?.accepting === true && !connection.stream.closed ? connection : undefined
  }

  subscribe (user: number, channelName: ChannelName, lastEventId: string | undefined): void {
    const res = new FakeResponse()
    const stream = new EventStream(res as unknown as RawResponse, this.log, lastEventId, JSON.stringify, this.openStreams)
    stream.open(200, {}, undefined, false)
    const channel = this.channels.channel(channelName)
    const connection = new Connection(user, channelName, channel, res, stream, lastEventId)
    this.connections.push(connection)
    this.latest[user] = connection
    if (lastEventId !== undefined) connection.expected.push(...this.replayOf(channelName, lastEventId, USERS[user]))
    const key = USERS[user]
    channel.subscribe(stream, lastEventId, key === undefined ? undefined : (event) => (event.data as Published).to === key)
  }

  publish (channelName: ChannelName, recipients: Recipient[], reuse: boolean, ownIds: boolean, big: boolean): void {
    const channel = this.channels.channel(channelName)
    for (const to of recipients) {
      const n = this.nextN++
      const record: Published = { n, to, id: undefined, own: ownIds ? `own-id-${n}` : undefined }
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
      this.settling.push(channel.publish(message).then((id) => { record.id = id }))
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
  }

  setMode (connection: Connection, mode: ReadMode): void {
    if (mode !== 'fast') connection.alwaysFast = false
    connection.res.setMode(mode)
  }

  closeChannel (channelName: ChannelName): void {
    const channel = this.channels.channel(channelName)
    for (const connection of this.connections) {
      if (connection.channel === channel) connection.accepting = false
    }
    this.settling.push(channel.close())
  }

  closeApp (): void {
    this.appClosed = true
    for (const connection of this.connections) connection.accepting = false
    // As the plugin's hooks do: streams first (preClose), then channels and the store (onClose).
    this.settling.push((async () => {
      await this.openStreams.closeAll()
      await this.channels.close()
    })())
  }

  /** Lets every client read, closes the app if it is not, and waits until every connection is over. */
  async finish (): Promise<void> {
    for (const connection of this.connections) connection.res.setMode('fast')
    if (!this.appClosed) this.closeApp()
    await within(Promise.all(this.settling), 'the app and its channels to close', 5000)
    await within(Promise.all(this.connections.map(async (connection) => {
      if (!connection.res.gone) await once(connection.res, 'close')
    })), 'every connection to close', 5000)
  }

  /** Why each connection's stream ended, and whether what it received is what the model says. */
  check (): string[] {
    const problems: string[] = []
    for (const [index, connection] of this.connections.entries()) {
      const label = `connection ${index} (user ${connection.user}, channel ${connection.channelName}, ` +
        `last id ${String(connection.lastEventId)})`
      const received = connection.received()
      const { expected } = connection
      const code = (connection.stream.signal.reason as { code?: string } | undefined)?.code
      // A client that went away may be ended by the server before its close is noticed.
      const prefixOnly = code === 'FST_SSE_SLOW_CLIENT' || connection.disconnected
      if (code === 'FST_SSE_SLOW_CLIENT' && connection.alwaysFast) problems.push(`${label}: a client that always read was dropped as slow`)
      if (code === 'FST_SSE_CLIENT_CLOSED' && !connection.disconnected) problems.push(`${label}: closed as if by the client`)
      const same = prefixOnly
        ? received.length <= expected.length && received.every((item, i) => item === expected[i])
        : received.length === expected.length && received.every((item, i) => item === expected[i])
      if (!same) {
        problems.push(`${label}, ended ${String(code)}: received [${received.join(' ')}], expected ` +
          `${prefixOnly ? 'a prefix of ' : ''}[${expected.join(' ')}]`)
      }
      for (const event of connection.res.events) {
        if (event.event === MISSED_EVENT || event.data.startsWith('own')) continue
        const n = (JSON.parse(event.data) as { n: number }).n
        const record = this.published.get(connection.channelName)?.find((published) => published.n === n)
        if (record?.id !== event.id) problems.push(`${label}: event n${n} came with id ${String(event.id)}, publish() gave ${String(record?.id)}`)
      }
    }
    const unexpected = this.logs.filter((record) => record.level === 'error' || !record.msg.includes('fell behind'))
    if (unexpected.length > 0) problems.push(`logged: ${JSON.stringify(unexpected.map((record) => record.msg))}`)
    return problems
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

type Command = fc.AsyncCommand<object, World>

const user = fc.integer({ min: 0, max: USERS.length - 1 })
const channelName = fc.constantFrom(...CHANNEL_NAMES)

class Subscribe implements Command {
  constructor (readonly user: number, readonly channel: ChannelName, readonly bogusId: boolean) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed || world.open(this.user) !== undefined) return
    world.subscribe(this.user, this.channel, this.bogusId ? 'never-sent' : undefined)
  }

  toString (): string { return `subscribe(${this.user}, ${this.channel}${this.bogusId ? ', bogus id' : ''})` }
}

/** The client comes back with the last id it got; `drop`: its connection breaks now (an EventSource's reconnect). */
class Resume implements Command {
  constructor (readonly user: number, readonly drop: boolean) {}
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
    world.subscribe(this.user, previous.channelName, previous.cursor())
  }

  toString (): string { return `${this.drop ? 'reconnect' : 'resume'}(${this.user})` }
}

class Publish implements Command {
  constructor (readonly channel: ChannelName, readonly recipients: Recipient[], readonly reuse: boolean,
    readonly ownIds: boolean, readonly big: boolean) {}

  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (world.appClosed) return
    world.publish(this.channel, this.recipients, this.reuse, this.ownIds, this.big)
  }

  toString (): string {
    return `publish(${this.channel}, [${this.recipients.join(',')}]${this.reuse ? ', reused' : ''}` +
      `${this.ownIds ? ', own ids' : ''}${this.big ? ', big' : ''})`
  }
}

class Send implements Command {
  constructor (readonly user: number, readonly big: boolean) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.open(this.user)
    if (connection !== undefined) world.send(connection, this.big)
  }

  toString (): string { return `send(${this.user}${this.big ? ', big' : ''})` }
}

class SetMode implements Command {
  constructor (readonly user: number, readonly mode: ReadMode) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.latest[this.user]
    if (connection !== undefined && !connection.res.gone) world.setMode(connection, this.mode)
  }

  toString (): string { return `${this.mode}(${this.user})` }
}

class Disconnect implements Command {
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

class CloseStream implements Command {
  constructor (readonly user: number) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    const connection = world.open(this.user)
    if (connection === undefined) return
    connection.accepting = false
    connection.stream.close()
  }

  toString (): string { return `stream.close(${this.user})` }
}

class CloseChannel implements Command {
  constructor (readonly channel: ChannelName) {}
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (!world.appClosed) world.closeChannel(this.channel)
  }

  toString (): string { return `channel.close(${this.channel})` }
}

class CloseApp implements Command {
  check (): boolean { return true }
  async run (_model: object, world: World): Promise<void> {
    if (!world.appClosed) world.closeApp()
  }

  toString (): string { return 'app.close()' }
}

class Wait implements Command {
  constructor (readonly turns: number) {}
  check (): boolean { return true }
  async run (): Promise<void> {
    for (let i = 0; i < this.turns; i++) await new Promise((resolve) => setImmediate(resolve))
  }

  toString (): string { return `wait(${this.turns})` }
}

const subscribe = fc.tuple(user, channelName, fc.boolean(), fc.boolean()).map(([u, c, a, b]) => new Subscribe(u, c, a && b))
const resume = fc.tuple(user, fc.boolean()).map(([u, drop]) => new Resume(u, drop))
const publish = fc.tuple(channelName, fc.array(fc.constantFrom<Recipient>('ann', 'bob'), { minLength: 1, maxLength: 8 }),
  fc.boolean(), fc.boolean(), fc.boolean()).map(([c, to, reuse, own, big]) => new Publish(c, to, reuse, own, big))
const send = fc.tuple(user, fc.boolean()).map(([u, big]) => new Send(u, big))
const setMode = fc.tuple(user, fc.constantFrom<ReadMode>('fast', 'slow', 'stalled', 'stalled')).map(([u, mode]) => new SetMode(u, mode))
const wait = fc.integer({ min: 1, max: 3 }).map((turns) => new Wait(turns))

// Repeated entries weigh more: most steps subscribe, publish, send and let time pass; few close things.
export const commands = fc.commands([
  subscribe, subscribe, subscribe, resume, resume, resume, publish, publish, publish, publish, publish, send, send, send,
  setMode, setMode, setMode, wait, wait, wait,
  user.map((u) => new Disconnect(u)),
  user.map((u) => new CloseStream(u)),
  channelName.map((c) => new CloseChannel(c)),
  fc.constant(new CloseApp())
], { maxCommands: 60, size: '+1' })

/** What the runs exercised, so that a test can say its search reached the cases that matter. */
export const tally: Record<string, number> = {}

function count (what: string, n = 1): void {
  tally[what] = (tally[what] ?? 0) + n
}

/** Runs one generated interleaving and throws, with what each connection got, if the model disagrees. */
export async function runInterleaving (options: ModelOptions, steps: Iterable<Command>): Promise<void> {
  const world = new World(options, await options.makeStore())
  await fc.asyncModelRun(() => ({ model: {}, real: world }), steps)
  await world.finish()
  const problems = world.check()
  if (problems.length > 0) throw new Error(problems.join('\n'))
  for (const connection of world.connections) {
    const code = (connection.stream.signal.reason as { code: string }).code
    count(`${code}${connection.alwaysFast ? ' (always fast)' : ''}`)
    count('events received', connection.received().length)
    if (connection.lastEventId !== undefined) count(connection.expected[0] === 'missed' ? 'resumed: missed' : 'resumed: found')
  }
}
