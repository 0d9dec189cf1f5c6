import type { Cluster, Redis, RedisOptions } from 'ioredis'
import type { RedisClient } from './connection'
import { requireIoredis } from './ioredis'

// The store's own connections, made from the client it is given (or makes), and the names they have in CLIENT LIST.
export const COMMANDS = 'fastify-sse-h2'
export const REPLAYS = 'fastify-sse-h2:replay'
export const LIVE = 'fastify-sse-h2:live'

/** The store's options for a connection of its own. */
export function ownOptions (name: string): RedisOptions {
  // Commands fail at once while Redis is away (no offline queue, no resend), so that a publish that failed is not
  // sent later behind the caller's back.
  return { connectionName: name, enableOfflineQueue: false, autoResendUnfulfilledCommands: false }
}

/**
 * A subscriber connection: to the one Redis, or to a node of the Cluster (`host:port`, as its slots name it), with the
 * Cluster's options for its nodes. It subscribes only once connected, and again itself after a reconnect (it must
 * know when each subscription took effect); channel names are whole (no keyPrefix: the script publishes on the key).
 */
export function liveConnection (client: RedisClient, node: string | undefined): Redis {
  const own: RedisOptions = {
    connectionName: LIVE,
    keyPrefix: '',
    lazyConnect: false,
    autoResubscribe: false,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: null
  }
  if (node === undefined) return (client as Redis).duplicate(own)
  const { Redis: NodeClient } = requireIoredis()
  const colon = node.lastIndexOf(':')
  return new NodeClient({ ...(client as Cluster).options.redisOptions, ...own, host: node.slice(0, colon), port: Number(node.slice(colon + 1)) })
}

/** A connection of the store's own, made from a client: one Redis, or a Cluster (whose node connections get the name). */
export function duplicate (client: RedisClient, name: string): RedisClient {
  const own = ownOptions(name)
  if (!client.isCluster) return (client as Redis).duplicate(own)
  const cluster = client as Cluster
  // A Cluster without its offline queue refuses a command for a node whose connection is still being made, and sends
  // it again later to another node, behind the commands after it: publishes of one channel would be stored out of
  // order. Its node connections queue until connected (ioredis always gives them an offline queue, and no reconnect:
  // a lost node's commands fail and go to the node that serves the slot now); the store's connection still fails
  // commands at once while the Cluster is away.
  return cluster.duplicate([], {
    enableOfflineQueue: true,
    redisOptions: { ...cluster.options.redisOptions, connectionName: name, autoResendUnfulfilledCommands: own.autoResendUnfulfilledCommands }
  })
}
