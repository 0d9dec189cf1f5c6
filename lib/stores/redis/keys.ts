// Where the Redis store keeps a channel. Redis Cluster runs a command on several keys (a read of what many channels
// missed) only when they hash to one slot, and delivers a sharded pub/sub message only on the node that serves its
// channel's slot: the part of a key between its first `{` and the `}` after it, the hash tag, decides the slot.
// Channels are spread over a fixed number of shards, each a hash tag of its own, so that one script reads on for many
// channels of a shard, and the shards spread over the cluster's nodes.

// Redis Cluster's slots, and its hash: CRC16 (XMODEM) of the hash tag, modulo the slots.
export const SLOTS = 16384

/** Redis Cluster's CRC16 of a key's bytes (CRC-16/XMODEM: polynomial 0x1021, no reflection, initial 0). */
function crc16 (bytes: Uint8Array): number {
  let crc = 0
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i] << 8
    for (let bit = 0; bit < 8; bit++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

/** The slot Redis Cluster gives a hash tag (or a key without one). */
export function slotOf (tag: string): number {
  return crc16(Buffer.from(tag)) % SLOTS
}

const tagsByShards = new Map<number, readonly string[]>()

/**
 * One hash tag per shard, the same in every process: shard i gets the first of the tags `0`, `1`, ... `z`, `10`,
 * ... (base 36) whose slot falls in the i-th of `shards` equal ranges of slots. Bare numbers would land on slots at
 * random (the hash of `{0}`, `{1}`, ...), and a few nodes would hold most shards; evenly spaced slots spread over the
 * nodes as the cluster assigns its slot ranges (`redis-cli --cluster create` gives each node one range).
 */
export function shardTags (shards: number): readonly string[] {
  let tags = tagsByShards.get(shards)
  if (tags !== undefined) return tags
  const found = new Array<string | undefined>(shards)
  let missing = shards
  for (let n = 0; missing > 0; n++) {
    const tag = n.toString(36)
    const range = Math.floor(slotOf(tag) * shards / SLOTS)
    if (found[range] === undefined) {
      found[range] = tag
      missing--
    }
  }
  tags = found as string[]
  tagsByShards.set(shards, tags)
  return tags
}

/** The keys of one store's prefix and shard count. */
export class RedisKeys {
  readonly prefix: string
  readonly shards: number
  private readonly tags: readonly string[]

  constructor (prefix: string, shards: number) {
    this.prefix = prefix
    this.shards = shards
    this.tags = shardTags(shards)
  }

  /** The shard of a channel: the same in every process with the same `shards`. */
  shardOf (channel: string): number {
    return crc16(Buffer.from(channel)) % this.shards
  }

  /** The Redis stream of a channel's events: `<prefix>{<tag>}<channel>`. */
  stream (channel: string): string {
    return this.prefix + '{' + this.tags[this.shardOf(channel)] + '}' + channel
  }

  /**
   * The publisher-given ids of a channel's retained events, a sorted set by the millisecond of each event's position:
   * `<prefix>ids{<tag>}<channel>`. Its kind comes before the tag, so that no channel name can make another's key.
   */
  ownIds (channel: string): string {
    return this.prefix + 'ids{' + this.tags[this.shardOf(channel)] + '}' + channel
  }

  /** The hash tag of a shard. */
  tag (shard: number): string {
    return this.tags[shard]
  }
}
