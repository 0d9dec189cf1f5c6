import type { FastifyBaseLogger } from 'fastify'
import type { ChannelEvent } from '../core/events'

/** An event as a channel's store keeps it. */
export interface StoredEvent {
  /** Its id as the client receives it: the publisher's, or the position when the publisher gave none. */
  readonly id: string
  /**
   * Where it stands in its channel, given by the store: `<n>` or `<n>-<n>` (a counter, or a Redis stream entry
   * id), increasing in the order the channel's events were stored, in every process.
   */
  readonly position: string
  /** The event's bytes as every subscriber receives them, `id:` line included, ending with a blank line. */
  readonly frame: string
  /** The event as it was published, with its id, read-only: what subscription filters are given. */
  readonly event: ChannelEvent
  /**
   * Set only on what a store hands its listeners in place of events it could no longer deliver (a live feed cut for
   * longer than the history lasts): `frame` is the `missed` event without an id line (as a replay gives it), `id`
   * is '', and `position` is right before the oldest event retained. Subscribers behind it get it, unfiltered.
   */
  readonly missed?: true
}

/** What a channel gives the store to keep. */
export interface EventToStore {
  /** The publisher's id, or undefined: the event's id is then its position. */
  id: string | undefined
  /** The event's fields other than `id`, framed, ending with a blank line. */
  body: string
  /** The event as it was published, without its id, as JSON: what the store hands back as `event`. */
  snapshot: string
}

/** The retained events published after a last event id. */
export type Replay =
  /** The id is retained: `position` is its event's, and `events` are those after it, oldest first. */
  | { found: true, position: string, events: StoredEvent[] }
  /** The id is not retained (too old, or never given): `events` is all that is retained, oldest first. */
  | { found: false, events: StoredEvent[] }

export type StoredEventListener = (event: StoredEvent) => void

/**
 * Where channels keep their history and get their positions, and how a publish reaches every process.
 * The memory store serves one process; a store over Redis serves several. Methods may answer at once
 * or with a promise: the memory store answers at once, so that a publish costs no extra tick.
 * `test/store-contract.ts` is the suite a store must pass.
 */
export interface SseStore {
  /** Keeps the event in the channel's history and hands it to the channel's listeners, in every process. */
  append: (channel: string, event: EventToStore) => StoredEvent | Promise<StoredEvent>
  /** The retained events published after the event whose id is `lastEventId`, oldest first. */
  readAfter: (channel: string, lastEventId: string) => Replay | Promise<Replay>
  /**
   * The retained events after the one at `position` (a position this store gave, or the same as one by
   * `comparePositions`: `5` is `5-0`), oldest first, found as in readAfter. Streams of several channels resume each of
   * them by position (their ids are cursors of positions). A store without it is asked readAfter() with the
   * position as the id: right for events published without an id of their own.
   */
  readAfterPosition?: (channel: string, position: string) => Replay | Promise<Replay>
  /**
   * The position of the channel's newest retained event, or undefined when it retains none, as of when it is asked
   * (an `append()` this process makes after the call comes after it): where a new subscriber starts (it is owed
   * exactly the events after it), so that a stream's cursor places each of its channels from the moment it
   * subscribes, whether the channel publishes since or not. A store whose listeners get events later than
   * `append()` resolves (through a reader, as Redis) must have it. A store without it must hand its listeners every
   * event as `append()` takes it: a channel then asks `readAfter()` with an id no event has when it is first
   * subscribed in a process (while it has no subscriber there, and until it is handed an event), and takes the
   * position of the newest event of that replay.
   */
  head?: (channel: string) => string | undefined | Promise<string | undefined>
  /** From now on, hands `listener` every event appended to the channel, in the order of their positions. */
  listen: (channel: string, listener: StoredEventListener) => void
  unlisten: (channel: string, listener: StoredEventListener) => void
  /** Lets go of what the store holds (timers, connections). Called by `app.close()`. */
  close: () => void | Promise<void>
  /** Given the app's logger when the plugin registers, for a store that has things to say (outages). */
  attach?: (log: FastifyBaseLogger) => void
  /**
   * How the instances that share the store reach each other: steering (`app.sse.tagged()`, `channel.presence()`)
   * sends its actions through it, and each instance answers. A store without it serves one process: steering then
   * acts on the streams of this process alone. `test/store-contract.ts` checks it when a store has it.
   */
  control?: SseStoreControl
}

/** A message between instances: a JSON value (an object), as `JSON.stringify` writes it. */
export type ControlMessage = Record<string, unknown>

/**
 * Given each message any member sends, this member's own included, in the order each member sent them; what it returns
 * or resolves to (a JSON value) is its answer. One that throws or rejects does not answer.
 */
export type ControlHandler = (message: ControlMessage) => unknown

/** What `send()` resolves to. */
export interface ControlResult {
  /** Each member's answer, by member id: every member that had joined when the message was sent, unless unanswered. */
  answers: Map<string, unknown>
  /** Members that had joined when the message was sent, and did not answer within the bound. */
  unanswered: string[]
}

/**
 * The instances that share a store (each registration of the plugin is a member), and the messages between them.
 * Every member gets every message sent after it joined, as long as it holds its place: a member whose process died
 * without a word (SIGKILL) loses its place within `leaseMs`, and is not waited for after that.
 */
export interface SseStoreControl {
  /** How long a member that stopped answering (a process gone) keeps its place, at most: ms. */
  readonly leaseMs: number
  /**
   * Joins as a new member: resolves once it gets every message sent from then on, and counts as a member for the
   * senders. `handler` is given each message.
   */
  join: (handler: ControlHandler) => Promise<ControlMember>
  /**
   * Reports values of this process (counts: the subscribers of each channel), which `sum()` adds up over every process
   * that shares the store: `read()` gives them, by name, when the store asks (each second over Redis; at each `sum()` in
   * one process). Returns what stops the reporting.
   */
  report: (read: () => ReadonlyMap<string, number>) => () => void
  /**
   * The sum of the values of that name every process reports, as of their last report (a second ago at the most over
   * Redis); a process gone without a word counts no more within `leaseMs`.
   */
  sum: (name: string) => Promise<number>
}

/** One member of the instances that share a store. */
export interface ControlMember {
  /** Its id, unique among the members (what a result names). */
  readonly id: string
  /**
   * Sends `message` (an object that survives JSON) to every member, this one included, and resolves once each member
   * that had joined when it was sent has answered, or after `timeoutMs`: the answers, and who did not answer.
   */
  send: (message: ControlMessage, timeoutMs: number) => Promise<ControlResult>
  /** Leaves: it gets no more messages, and senders no longer wait for it. */
  leave: () => Promise<void>
}
