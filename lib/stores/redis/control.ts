import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { ControlHandler, ControlMember, ControlMessage, ControlResult, SseStoreControl } from '../store'
import type { RedisClient, StoreConnection } from './connection'
import type { LiveChannel } from './follow'
import type { LiveFeed } from './live-feed'
import type { RedisKeys } from './keys'
import { noop } from './connection'

// A member renews its place this often, and keeps it this long: a process gone without a word (SIGKILL) is no longer
// waited for within LEASE_MS.
const RENEW_MS = 1000
const LEASE_MS = 3000
// Every this many renewals, the subscriber connections must answer a PING: one dead without a word delivers nothing.
const CHECK_EVERY = 5
// A process that reports values sends those that changed this often (and renews their lease).
const REPORT_MS = 1000

// Redis's clock in ms, for the leases of every process alike.
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

/**
 * Renews members' places: KEYS members; ARGV lease (ms), then the members. Places that lapsed go; the set itself
 * lapses with the last lease renewed, once every process is gone.
 */
const LEASE = NOW + `
local expires = string.format('%.0f', now + tonumber(ARGV[1]))
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], expires, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`

/**
 * Sends a message to every member: KEYS members, the channel every process subscribes to; ARGV the publish command
 * (PUBLISH, or SPUBLISH on a Redis Cluster), the message. Returns the members whose place holds now: those who must
 * answer (each subscribed before it took its place, so each gets the message).
 */
const SEND = NOW + `
redis.call(ARGV[1], KEYS[2], ARGV[2])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
`

/** Answers a sender: KEYS its process's channel; ARGV the publish command, the answer. */
const ANSWER = `
return redis.call(ARGV[1], KEYS[1], ARGV[2])
`

/**
 * Reports a process's values: KEYS the set of reporting processes, the process's hash of values; ARGV the lease (ms),
 * the process, then names and values that changed (0: gone). Its place and its values lapse with the lease. Returns
 * whether Redis still had its values: if not (they lapsed, Redis lost them), the process sends them all next time.
 */
const REPORT = NOW + `
local had = redis.call('EXISTS', KEYS[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[1])), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '0' then redis.call('HDEL', KEYS[2], ARGV[i]) else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return had
`

/**
 * The sum of one value over the processes whose report holds: KEYS the set of reporting processes; ARGV the name of
 * their hashes but the process (with the client's keyPrefix: the same slot), the value's name.
 */
const SUM = NOW + `
local sum = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')) do
  sum = sum + (tonumber(redis.call('HGET', ARGV[1] .. id, ARGV[2])) or 0)
end
return sum
`

interface ControlClient {
  sseLease: (members: string, leaseMs: number, ...ids: string[]) => Promise<number>
  sseSend: (members: string, channel: string, publish: string, text: string) => Promise<string[]>
  sseAnswer: (channel: string, publish: string, text: string) => Promise<number>
  sseReport: (reporters: string, values: string, leaseMs: number, id: string, ...namesAndValues: Array<string | number>) => Promise<number>
  sseSum: (reporters: string, valuesPrefix: string, name: string) => Promise<number>
}

/** What the control needs of its store. */
export interface ControlParts {
  commands: StoreConnection
  feed: LiveFeed
  keys: RedisKeys
  /** The client's keyPrefix: pub/sub channels are named with it (scripts publish on their keys). */
  keyPrefix: string
  publish: 'PUBLISH' | 'SPUBLISH'
  commandTimeout: number
  log: () => FastifyBaseLogger | undefined
  unavailable: (reason: string, cause?: unknown) => Error
  timedOut: () => Error
}

/** A message on its way: `{ a: action, r: the sender's process, m: the message }`; an answer: `{ a, f: member, v }`. */
interface Sent {
  a: string
  r: string
  m: ControlMessage
}

interface Answer {
  a: string
  f: string
  v: unknown
}

/** A send waiting for its answers. */
interface Waiting {
  readonly answers: Map<string, unknown>
  /** Resolves the send if every member it waits for has answered: a no-op until the send knows who they are. */
  settle: () => void
}

/**
 * The instances that share one Redis (or Redis Cluster), through the store's live path: every process subscribes to
 * one pub/sub channel, where a message goes to all, and to one of its own, where answers come back (on a Cluster,
 * sharded pub/sub in the slot of shard 0's hash tag, beside the set of members). A member holds its place in that set
 * by renewing it every second; a sender is told, in the same script that publishes, who holds a place, and waits for
 * each of their answers, within its bound. Costs Redis, at rest, one script call a second per process, and a PING per
 * subscriber connection every 5 s; a message, one call from its sender and one answer from each member.
 */
export class RedisControl implements SseStoreControl {
  readonly leaseMs = LEASE_MS
  /** This process's id in the set of members (its members are `<id>/<n>`). */
  readonly id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  private readonly parts: ControlParts
  private readonly membersKey: string
  private readonly reportersKey: string
  private readonly valuesKey: string
  private readonly broadcast: ControlChannel
  private readonly replies: ControlChannel
  private readonly members = new Map<string, ControlHandler>()
  private readonly waiting = new Map<string, Waiting>()
  private subscribed: Promise<void> | undefined
  // Resolved at the next renewal that Redis takes.
  private renewed: Array<() => void> = []
  private timer: NodeJS.Timeout | undefined
  private renewals = 0
  private joined = 0
  private sent = 0
  private closed = false
  // What this process reports: its readers, and the values Redis has of it.
  private readonly readers = new Set<() => ReadonlyMap<string, number>>()
  private reported = new Map<string, number>()
  private reportTimer: NodeJS.Timeout | undefined
  private reporting = false

  constructor (parts: ControlParts) {
    this.parts = parts
    const base = `${parts.keys.prefix}control{${parts.keys.tag(0)}}`
    this.membersKey = base + 'members'
    this.reportersKey = base + 'reporters'
    this.valuesKey = base + 'values:'
    const client = parts.commands.client as RedisClient
    client.defineCommand('sseLease', { numberOfKeys: 1, lua: LEASE })
    client.defineCommand('sseSend', { numberOfKeys: 2, lua: SEND })
    client.defineCommand('sseAnswer', { numberOfKeys: 1, lua: ANSWER })
    client.defineCommand('sseReport', { numberOfKeys: 2, lua: REPORT })
    client.defineCommand('sseSum', { numberOfKeys: 1, lua: SUM })
    this.broadcast = new ControlChannel(base + 'all', parts.keyPrefix, (text) => this.received(text), parts.log)
    this.replies = new ControlChannel(this.repliesKey(this.id), parts.keyPrefix, (text) => this.answered(text), parts.log)
  }

  async join (handler: ControlHandler): Promise<ControlMember> {
    if (this.closed) throw this.parts.unavailable('the store is closed')
    this.subscribed ??= this.subscribe()
    await this.subscribed
    const id = `${this.id}/${++this.joined}`
    this.members.set(id, handler)
    // A place taken: senders from now on wait for it (a renewal Redis takes; retried every second until then).
    const placed = new Promise<void>((resolve) => this.renewed.push(resolve))
    this.renew()
    this.timer ??= setInterval(() => this.renew(), RENEW_MS).unref()
    await placed
    return {
      id,
      send: async (message, timeoutMs) => await this.send(message, timeoutMs),
      leave: async () => await this.leave(id)
    }
  }

  report (read: () => ReadonlyMap<string, number>): () => void {
    this.readers.add(read)
    this.reportTimer ??= setInterval(() => this.sendReport(), REPORT_MS).unref()
    return () => { this.readers.delete(read) }
  }

  async sum (name: string): Promise<number> {
    const client = this.parts.commands.client as RedisClient & ControlClient
    return await this.parts.commands.send(async () => await client.sseSum(this.reportersKey,
      this.parts.keyPrefix + this.valuesKey, name), this.parts.unavailable, this.parts.timedOut)
  }

  /** Every member of this process leaves, and its reported values go; nothing more is sent or answered. */
  async close (): Promise<void> {
    clearInterval(this.reportTimer)
    this.readers.clear()
    const client = this.parts.commands.client as RedisClient
    await Promise.all([
      ...[...this.members.keys()].map(async (id) => await this.leave(id)),
      this.reported.size === 0
        ? undefined
        : this.parts.commands.send(async () => await client.multi().del(this.valuesKey + this.id).zrem(this.reportersKey, this.id).exec(),
          this.parts.unavailable, this.parts.timedOut).catch(() => {})
    ])
    this.closed = true
  }

  /** Sends the values that changed since the last report Redis took, and renews their lease (while there are any). */
  private sendReport (): void {
    if (this.reporting) return
    const values = new Map<string, number>()
    for (const read of this.readers) {
      for (const [name, value] of read()) if (value !== 0) values.set(name, (values.get(name) ?? 0) + value)
    }
    if (values.size === 0 && this.reported.size === 0) return
    const changes: Array<string | number> = []
    for (const [name, value] of values) if (this.reported.get(name) !== value) changes.push(name, value)
    for (const name of this.reported.keys()) if (!values.has(name)) changes.push(name, 0)
    const client = this.parts.commands.client as RedisClient & ControlClient
    this.reporting = true
    this.parts.commands.send(async () => await client.sseReport(this.reportersKey, this.valuesKey + this.id, LEASE_MS, this.id,
      ...changes), this.parts.unavailable, this.parts.timedOut).then((had) => {
      // Values Redis no longer had (none reported before, or lost): all of them next time.
      this.reported = had === 1 || this.reported.size === 0 ? values : new Map()
    }, (error: unknown) => {
      // Redis away: the next report sends what changed since the last it took.
      this.parts.log()?.debug({ err: error }, 'fastify-sse-h2: this instance could not report its counts')
    }).finally(() => { this.reporting = false })
  }

  private async subscribe (): Promise<void> {
    this.parts.feed.add(this.broadcast)
    this.parts.feed.add(this.replies)
    await Promise.all([this.broadcast.ready(), this.replies.ready()])
  }

  private async send (message: ControlMessage, timeoutMs: number): Promise<ControlResult> {
    const action = `${this.id}#${++this.sent}`
    let done!: () => void
    const answered = new Promise<void>((resolve) => { done = resolve })
    // Answers that come before Redis has said who must answer wait for it.
    const waiting: Waiting = { answers: new Map(), settle: noop }
    this.waiting.set(action, waiting)
    let expected: string[] = []
    const timer = setTimeout(done, timeoutMs)
    const client = this.parts.commands.client as RedisClient & ControlClient
    const text = JSON.stringify({ a: action, r: this.id, m: message } satisfies Sent)
    try {
      expected = await this.parts.commands.send(async () => await client.sseSend(this.membersKey, this.broadcast.key, this.parts.publish, text),
        this.parts.unavailable, this.parts.timedOut)
      waiting.settle = () => { if (expected.every((member) => waiting.answers.has(member))) done() }
      waiting.settle()
      await answered
    } finally {
      clearTimeout(timer)
      this.waiting.delete(action)
    }
    return { answers: waiting.answers, unanswered: expected.filter((member) => !waiting.answers.has(member)) }
  }

  /** A message sent by any member: each member of this process answers it, in the order the members joined. */
  private received (text: string): void {
    const sent = parse<Sent>(text)
    if (sent === undefined) return
    for (const [id, handler] of this.members) {
      // Each handler is called in this tick, in the order the messages came; one that throws or rejects does not answer.
      new Promise((resolve) => { resolve(handler((JSON.parse(text) as Sent).m)) }).then((value) => this.answer(sent, id, value), () => {})
    }
  }

  private answer (sent: Sent, member: string, value: unknown): void {
    const client = this.parts.commands.client as RedisClient & ControlClient
    const text = JSON.stringify({ a: sent.a, f: member, v: value } satisfies Answer)
    this.parts.commands.send(async () => await client.sseAnswer(this.repliesKey(sent.r), this.parts.publish, text),
      this.parts.unavailable, this.parts.timedOut).catch((error: unknown) => {
      // The sender names this member as not answering.
      this.parts.log()?.debug({ err: error }, 'fastify-sse-h2: an answer to another instance could not be sent')
    })
  }

  private answered (text: string): void {
    const answer = parse<Answer>(text)
    const waiting = this.waiting.get(answer?.a as string)
    // Not one of ours (any more: an answer later than the bound).
    if (waiting === undefined) return
    waiting.answers.set((answer as Answer).f, (answer as Answer).v ?? null)
    waiting.settle()
  }

  private renew (): void {
    const ids = [...this.members.keys()]
    const client = this.parts.commands.client as RedisClient & ControlClient
    if (++this.renewals % CHECK_EVERY === 0) this.parts.feed.check(this.parts.commandTimeout)
    this.parts.commands.send(async () => await client.sseLease(this.membersKey, LEASE_MS, ...ids), this.parts.unavailable,
      this.parts.timedOut).then(() => {
      const renewed = this.renewed
      this.renewed = []
      for (const resolve of renewed) resolve()
    }, (error: unknown) => {
      // Redis away: the store says so; the next renewal tries again.
      this.parts.log()?.debug({ err: error }, 'fastify-sse-h2: a member of the instances could not renew its place')
    })
  }

  private async leave (id: string): Promise<void> {
    if (!this.members.delete(id)) return
    if (this.members.size === 0) {
      clearInterval(this.timer)
      this.timer = undefined
      this.subscribed = undefined
      this.parts.feed.remove(this.broadcast)
      this.parts.feed.remove(this.replies)
    }
    const client = this.parts.commands.client as RedisClient
    await this.parts.commands.send(async () => await client.zrem(this.membersKey, id), this.parts.unavailable,
      this.parts.timedOut).catch(() => {})
  }

  private repliesKey (process: string): string {
    return `${this.parts.keys.prefix}control{${this.parts.keys.tag(0)}}to:${process}`
  }
}

/** A message of another version, or of something else on the channel, is not one: undefined. */
function parse<T extends object> (text: string): T | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && 'a' in value ? value as T : undefined
  } catch {
    return undefined
  }
}

/** One of the control's pub/sub channels, subscribed on the live connection of shard 0's node. */
class ControlChannel implements LiveChannel {
  /** Its name as the scripts publish on it (a key: the client adds its keyPrefix). */
  readonly key: string
  readonly liveName: string
  readonly channel = 'the instances\' control channel'
  readonly shard = 0
  private readonly onMessage: (text: string) => void
  private readonly log: () => FastifyBaseLogger | undefined
  private waits: Array<() => void> = []

  constructor (key: string, keyPrefix: string, onMessage: (text: string) => void, log: () => FastifyBaseLogger | undefined) {
    this.key = key
    this.liveName = keyPrefix + key
    this.onMessage = onMessage
    this.log = log
  }

  /** Resolves once Redis confirms the subscription asked for now (it was added to the live feed). */
  async ready (): Promise<void> {
    await new Promise<void>((resolve) => this.waits.push(resolve))
  }

  message (text: string): void {
    this.onMessage(text)
  }

  subscribed (): void {
    const waits = this.waits
    this.waits = []
    for (const resolve of waits) resolve()
  }

  /** Lost for a moment (the connection dropped, a failover): messages sent meanwhile are missed, and answered by none. */
  unsubscribed (): void {}

  /** Redis refused it (an ACL): no message comes, and senders name this process's members as not answering. */
  subscriptionRefused (): void {
    this.log()?.error({ channel: this.liveName },
      'fastify-sse-h2: Redis refused the subscription to the instances\' control channel; steering cannot reach this instance')
    this.subscribed()
  }
}
