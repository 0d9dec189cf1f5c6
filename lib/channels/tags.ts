import type { EventStream } from './event-stream'

/** A tagged stream's tags, and the registry that holds it. */
interface Tagged {
  readonly registry: TagRegistry
  readonly tags: readonly string[]
}

// The tags of each tagged stream, kept here rather than on the stream: a stream without tags costs nothing (no field
// on every stream; one lookup, that finds nothing, when it ends).
const taggedStreams = new WeakMap<object, Tagged>()

/** The open streams of one plugin instance that have tags, by tag: what `app.sse.tagged(tag)` acts on here. */
export class TagRegistry {
  private readonly byTag = new Map<string, Set<EventStream>>()

  /** Tags a stream, until it ends (`untag()`). */
  tag (stream: EventStream, tags: readonly string[]): void {
    taggedStreams.set(stream, { registry: this, tags })
    for (const tag of tags) {
      let streams = this.byTag.get(tag)
      if (streams === undefined) {
        streams = new Set()
        this.byTag.set(tag, streams)
      }
      streams.add(stream)
    }
  }

  /** The streams with the tag, not closed: a copy, as acting on one may end it. */
  streams (tag: string): EventStream[] {
    const streams: EventStream[] = []
    for (const stream of this.byTag.get(tag) ?? []) if (!stream.closed) streams.push(stream)
    return streams
  }

  /** How many streams with the tag are open (not closed). */
  count (tag: string): number {
    let count = 0
    for (const stream of this.byTag.get(tag) ?? []) if (!stream.closed) count++
    return count
  }

  /** @internal */
  remove (stream: EventStream, tags: readonly string[]): void {
    for (const tag of tags) {
      const streams = this.byTag.get(tag) as Set<EventStream>
      streams.delete(stream)
      if (streams.size === 0) this.byTag.delete(tag)
    }
  }
}

/** The stream ended: it leaves the registry that holds it, if it had tags. */
export function untag (stream: EventStream): void {
  const tagged = taggedStreams.get(stream)
  if (tagged === undefined) return
  taggedStreams.delete(stream)
  tagged.registry.remove(stream, tagged.tags)
}
