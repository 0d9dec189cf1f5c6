import type { FastifyBaseLogger } from 'fastify'
import type { SseEvent } from './types'

/** An event as a channel's store keeps it. */
export interface StoredEvent {
  /** Its id: the publisher's, or one the store gave it. Increasing within a channel for store-given ids. */
  id: string
  /** The event's bytes as every subscriber receives them, `id:` line included, ending with a blank line. */
  frame: string
  /**
   * The event as it was published, when the store has it (events published in this process):
   * what subscription filters are given.
   */
  event?: SseEvent
}

/** What a channel gives the store to keep: the frame without its `id:` line, and the event. */
export interface EventToStore {
  /** The publisher's id, or undefined for the store to give one. */
  id: string | undefined
  /** The event's fields other than `id`, framed, ending with a blank line. */
  body: string
  event: SseEvent
}

/** The events retained after a last event id. */
export interface Replay {
  /** False when the id is not retained (too old, or never seen): `events` is then all that is retained. */
  found: boolean
  /** Oldest first. */
  events: StoredEvent[]
}

export type StoredEventListener = (event: StoredEvent) => void

/**
 * Where channels keep their history and get their ids, and how a publish reaches every process.
 * The memory store serves one process; a store over Redis serves several. Methods may answer at once
 * or with a promise: the memory store answers at once, so that a publish costs no extra tick.
 */
export interface SseStore {
  /** Keeps the event in the channel's history and hands it to the channel's listeners, in every process. */
  append: (channel: string, event: EventToStore) => StoredEvent | Promise<StoredEvent>
  /** The retained events published after `lastEventId`, oldest first. */
  readAfter: (channel: string, lastEventId: string) => Replay | Promise<Replay>
  /** From now on, hands `listener` every event appended to the channel, in order. */
  listen: (channel: string, listener: StoredEventListener) => void
  unlisten: (channel: string, listener: StoredEventListener) => void
  /** Lets go of what the store holds (timers, connections). Called by `app.close()`. */
  close: () => void | Promise<void>
  /** Given the app's logger when the plugin registers, for a store that has things to say (outages). */
  attach?: (log: FastifyBaseLogger) => void
}

/** The frame of a stored event: its id line, then the rest. */
export function frameWithId (id: string, body: string): string {
  return 'id: ' + id + '\n' + body
}
