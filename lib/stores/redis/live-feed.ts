import type { FastifyBaseLogger } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import type { LiveChannel } from './follow'
import type { RedisClient } from './connection'
import type { RedisKeys } from './keys'
import { LiveConnection } from './live-connection'
import { slotOf } from './keys'

/** Makes a subscriber connection: to the one Redis, or to the Cluster node `host:port`. */
export type MakeLiveConnection = (node: string | undefined) => Redis

/**
 * A process's subscriptions: one subscriber connection to the one Redis; on a Redis Cluster, one per node that serves
 * the slot of a shard with followed channels (sharded pub/sub: a message reaches only the subscribers of its slot's
 * node). It follows the Cluster's view of its slots: when a slot moves, or a replica takes over from a primary, the
 * shard's channels are subscribed on the node that serves it now, and each reads on from its stream from where it
 * was once that subscription took effect. A connection left with no channel is closed.
 */
export class LiveFeed {
  private readonly client: RedisClient
  private readonly keys: RedisKeys
  private readonly make: MakeLiveConnection
  private readonly log: () => FastifyBaseLogger | undefined
  // By node ('' for the one Redis).
  private readonly connections = new Map<string, LiveConnection>()
  // On a Cluster: the channels of each shard, and the node each shard's channels are subscribed on.
  private readonly byShard = new Map<number, Set<LiveChannel>>()
  private readonly shardNodes = new Map<number, string>()

  constructor (client: RedisClient, keys: RedisKeys, make: MakeLiveConnection, log: () => FastifyBaseLogger | undefined) {
    this.client = client
    this.keys = keys
    this.make = make
    this.log = log
    if (client.isCluster) {
      client.on('refresh', () => this.reassign())
      client.on('ready', () => this.reassign())
    }
  }

  get empty (): boolean {
    return this.connections.size === 0
  }

  add (channel: LiveChannel): void {
    if (!this.client.isCluster) {
      this.connection('').add(channel)
      return
    }
    let channels = this.byShard.get(channel.shard)
    if (channels === undefined) {
      channels = new Set()
      this.byShard.set(channel.shard, channels)
    }
    channels.add(channel)
    const node = this.shardNodes.get(channel.shard) ?? this.nodeOf(channel.shard)
    // The Cluster does not know its slots yet: subscribed once it does (its 'ready').
    if (node === undefined) return
    this.shardNodes.set(channel.shard, node)
    this.connection(node).add(channel)
  }

  remove (channel: LiveChannel): void {
    let node = ''
    if (this.client.isCluster) {
      const channels = this.byShard.get(channel.shard)
      channels?.delete(channel)
      node = this.shardNodes.get(channel.shard) as string
      if (channels?.size === 0) {
        this.byShard.delete(channel.shard)
        this.shardNodes.delete(channel.shard)
      }
    }
    const connection = this.connections.get(node)
    if (connection === undefined) return
    connection.remove(channel)
    if (connection.empty) this.drop(node, connection)
  }

  /** Whether each connection still answers (see LiveConnection.check). */
  check (timeoutMs: number): void {
    for (const connection of this.connections.values()) connection.check(timeoutMs)
  }

  stop (): void {
    for (const [node, connection] of this.connections) this.drop(node, connection)
  }

  private connection (node: string): LiveConnection {
    let connection = this.connections.get(node)
    if (connection === undefined) {
      const made = new LiveConnection(this.make(node === '' ? undefined : node), this.client.isCluster,
        (from, error) => this.moved(from, error), this.log)
      // A node that went away: the Cluster is asked again who serves its slots (a replica may have taken over).
      if (this.client.isCluster) {
        made.connection.on('close', () => {
          if (this.connections.get(node) === made) (this.client as Cluster).refreshSlotsCache()
        })
      }
      this.connections.set(node, made)
      connection = made
    }
    return connection
  }

  private drop (node: string, connection: LiveConnection): void {
    this.connections.delete(node)
    connection.stop()
  }

  /** The node that serves a shard's slot, as the Cluster sees it: `host:port`. */
  private nodeOf (shard: number): string | undefined {
    return (this.client as Cluster).slots[slotOf(this.keys.tag(shard))]?.[0]
  }

  /**
   * A node let go of subscriptions unasked (a slot it no longer serves): the connection subscribes again to all it
   * holds. A node answered that a slot is served elsewhere (MOVED <slot> <host:port>): the slot's shards subscribed
   * on it go there. Either way, the Cluster is asked again who serves what.
   */
  private moved (connection: LiveConnection, error?: Error): void {
    if (error === undefined) connection.resubscribe()
    else {
      const [, slot, node] = error.message.split(' ')
      for (const shard of this.byShard.keys()) {
        const on = this.shardNodes.get(shard) as string
        if (slotOf(this.keys.tag(shard)) === Number(slot) && this.connections.get(on) === connection) this.move(shard, node)
      }
    }
    (this.client as Cluster).refreshSlotsCache()
  }

  /** The Cluster's view of its slots changed, or was read again: each shard goes to the node that serves it now. */
  private reassign (): void {
    for (const shard of this.byShard.keys()) {
      const node = this.nodeOf(shard)
      if (node !== undefined && node !== this.shardNodes.get(shard)) this.move(shard, node)
    }
  }

  private move (shard: number, node: string): void {
    const from = this.shardNodes.get(shard)
    const channels = this.byShard.get(shard) as Set<LiveChannel>
    const previous = from === undefined ? undefined : this.connections.get(from)
    this.shardNodes.set(shard, node)
    const next = this.connection(node)
    for (const channel of channels) {
      if (previous !== undefined) {
        previous.remove(channel)
        channel.unsubscribed()
      }
      next.add(channel)
    }
    if (previous?.empty === true) this.drop(from as string, previous)
  }
}
