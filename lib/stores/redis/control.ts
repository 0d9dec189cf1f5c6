import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { ControlHandler, ControlMember, ControlMessage, ControlResult, SseStoreControl } from '../store'
import type { RedisClient, StoreConnection } from './connection'
import type { LiveChannel } from './follow'
import type { LiveFeed } from './live-feed'
import type { RedisKeys } from './keys'

// A member renews its place this often, and keeps it this long: a process gone without a word (SIGKILL) is no longer
// waited for within LEASE_MS.
const RENEW_MS = 1000
const LEASE_MS = 3000
// Every this many renewals, the subscriber connections must answer a PING: one dead without a word delivers nothing.
const CHECK_EVERY = 5

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

interface ControlClient {
  sseLease: (members: string, leaseMs: number, ...ids: string[]) => Promise<number>
  sseSend: (members: string, channel: string, publish: string, text: string) => Promise<string[]>
  sseAnswer: (channel: string, publish: string, text: string) => Promise<number>
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
  expected: Set<string> | undefined
  readonly done: () => void
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

  constructor (parts: ControlParts) {
    this.parts = parts
    const base = `${parts.keys.prefix}control{${parts.keys.tag(0)}}`
    this.membersKey = base + 'members'
    ;(parts.commands.client as RedisClient).defineCommand('sseLease', { numberOfKeys: 1, lua: LEASE })
    ;(parts.commands.client as RedisClient).defineCommand('sseSend', { numberOfKeys: 2, lua: SEND })
    ;(parts.commands.client as RedisClient).defineCommand('sseAnswer', { numberOfKeys: 1, lua: ANSWER })
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

  /** Every member of this process leaves; nothing more is sent or answered. */
  async close (): Promise<void> {
    await Promise.all([...this.members.keys()].map(async (id) => await this.leave(id)))
    this.closed = true
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
    const waiting: Waiting = { answers: new Map(), expected: undefined, done }
    this.waiting.set(action, waiting)
    const timer = setTimeout(done, timeoutMs)
    const client = this.parts.commands.client as RedisClient & ControlClient
    const text = JSON.stringify({ a: action, r: this.id, m: message } satisfies Sent)
    try {
      const members = await this.parts.commands.send(async () => await client.sseSend(this.membersKey, this.broadcast.key, this.parts.publish, text),
        this.parts.unavailable, this.parts.timedOut)
      waiting.expected = new Set(members)
      settle(waiting)
      await answered
    } finally {
      clearTimeout(timer)
      this.waiting.delete(action)
    }
    const expected = waiting.expected as Set<string>
    return { answers: waiting.answers, unanswered: [...expected].filter((member) => !waiting.answers.has(member)) }
  }

  /** A message sent by any member: each member of this process answers it, in the order the members joined. */
  private received (text: string): void {
    const sent = parse<Sent>(text)
    if (sent === undefined) return
    for (const [id, handler] of this.members) {
      let answer: unknown
      try {
        answer = handler((JSON.parse(text) as Sent).m)
      } catch {
        continue
      }
      Promise.resolve(answer).then((value) => this.answer(sent, id, value), () => {})
    }
  }

  private answer (sent: Sent, member: string, value: unknown): void {
    if (!this.members.has(member)) return
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
    const waiting = answer === undefined ? undefined : this.waiting.get(answer.a)
    if (waiting === undefined) return
    waiting.answers.set((answer as Answer).f, (answer as Answer).v)
    settle(waiting)
  }

  private renew (): void {
    const ids = [...this.members.keys()]
    if (ids.length === 0) return
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

function settle (waiting: Waiting): void {
  const expected = waiting.expected
  if (expected === undefined) return
  for (const member of expected) if (!waiting.answers.has(member)) return
  waiting.done()
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
  private isSubscribed = false
  private waits: Array<() => void> = []

  constructor (key: string, keyPrefix: string, onMessage: (text: string) => void, log: () => FastifyBaseLogger | undefined) {
    this.key = key
    this.liveName = keyPrefix + key
    this.onMessage = onMessage
    this.log = log
  }

  async ready (): Promise<void> {
    if (this.isSubscribed) return
    await new Promise<void>((resolve) => this.waits.push(resolve))
  }

  message (text: string): void {
    this.onMessage(text)
  }

  subscribed (): void {
    this.isSubscribed = true
    const waits = this.waits
    this.waits = []
    for (const resolve of waits) resolve()
  }

  unsubscribed (): void {
    this.isSubscribed = false
  }

  /** Redis refused it (an ACL): no message comes, and senders name this process's members as not answering. */
  subscriptionRefused (): void {
    this.log()?.error({ channel: this.liveName },
      'fastify-sse-h2: Redis refused the subscription to the instances\' control channel; steering cannot reach this instance')
    this.subscribed()
  }
}
