import type { StoredEvent } from '../stores/store'
import type { Subscription } from './subscription'

// A position no event has: the key of a channel without a position; and the key of the subscription written.
const NO_POSITION = ''
const WRITTEN = -1

interface Node extends Map<string | number, Node | Buffer> {}

/**
 * The frames of one flush of a channel for streams of several channels, whose ids are their cursors. Streams that stand
 * at the same place (the same channels in the same order, under the same salt, the others at the same positions) write
 * the same cursors, and so the same frames: the first builds them, and each of the others writes that Buffer as it is.
 * A page of 10 channels that every client opens costs a stream about what a stream of one channel does.
 */
export class CursorFrames {
  /** The events of the flush: the frames are those of every one of them, for a subscription without a filter. */
  readonly events: readonly StoredEvent[]
  // By salt, then the number of subscriptions (so that no path is the start of another), then for each subscription of
  // the stream in order its key and its position (the one written: WRITTEN).
  private readonly bySalt: Node = new Map()

  constructor (events: readonly StoredEvent[]) {
    this.events = events
  }

  /** The frames of every event for `subscription`, of a stream whose keys have `salt`: `build()` unless made already. */
  framesFor (salt: number, subscription: Subscription, subscriptions: readonly Subscription[], build: () => string): Buffer {
    let node = child(this.bySalt, salt)
    let key: string | number = subscriptions.length
    for (const each of subscriptions) {
      node = child(child(node, key), each.cursorKey)
      key = each === subscription ? WRITTEN : each.cursorPosition ?? NO_POSITION
    }
    let frames = node.get(key) as Buffer | undefined
    if (frames === undefined) {
      frames = Buffer.from(build())
      node.set(key, frames)
    }
    return frames
  }
}

function child (node: Node, key: string | number): Node {
  let next = node.get(key) as Node | undefined
  if (next === undefined) {
    next = new Map()
    node.set(key, next)
  }
  return next
}
