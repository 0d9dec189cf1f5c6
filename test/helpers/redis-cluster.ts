import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { RedisServer, eventually, freePort } from './redis'

const run = promisify(execFile)

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** A port whose cluster bus port (port + 10000) is free as well. */
async function clusterPort (): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port + 10000 > 65535) continue
    const bus = createServer()
    const free = await new Promise<boolean>((resolve) => {
      bus.once('error', () => resolve(false))
      bus.listen(port + 10000, '127.0.0.1', () => resolve(true))
    })
    if (free) {
      bus.close()
      await once(bus, 'close')
      return port
    }
  }
}

/**
 * A real Redis Cluster on 127.0.0.1: three primaries made with `redis-cli --cluster create`, each its own
 * redis-server process with a short node timeout, so that a failover takes a second or two. Replicas on demand.
 */
export class RedisCluster {
  readonly nodes: RedisServer[] = []
  private readonly dir = mkdtempSync(join(tmpdir(), 'sse-cluster-'))

  /** The startup nodes a client is given. */
  get startupNodes (): Array<{ host: string, port: number }> {
    return this.nodes.map((node) => ({ host: '127.0.0.1', port: node.port }))
  }

  async start (primaries = 3): Promise<void> {
    for (let i = 0; i < primaries; i++) this.nodes.push(await this.startNode())
    await run('redis-cli', ['--cluster', 'create', ...this.nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', '0',
      '--cluster-yes'])
    await this.untilHealthy()
  }

  /** Adds a replica of the primary on `port`, and resolves once it has caught up. */
  async addReplica (port: number): Promise<RedisServer> {
    const replica = await this.startNode()
    this.nodes.push(replica)
    const id = await this.nodeId(port)
    await run('redis-cli', ['--cluster', 'add-node', `127.0.0.1:${replica.port}`, `127.0.0.1:${port}`, '--cluster-slave',
      '--cluster-master-id', id])
    await eventually(async () => /master_link_status:up/.test(await this.ask(replica.port, ['INFO', 'replication']) as string),
      'the replica to catch up', 20_000)
    await this.untilHealthy()
    return replica
  }

  /** The port of the primary that serves `slot`. */
  async ownerOf (slot: number): Promise<number> {
    const ranges = await this.ask(this.nodes.find((node) => node.running)?.port as number, ['CLUSTER', 'SLOTS']) as Array<[number, number, [string, number]]>
    const range = ranges.find(([from, to]) => slot >= from && slot <= to)
    if (range === undefined) throw new Error(`no node serves slot ${slot}`)
    return range[2][1]
  }

  /** Moves a slot, with its keys, to the primary on `to`: as `redis-cli --cluster reshard` does, one slot. */
  async moveSlot (slot: number, to: number): Promise<void> {
    const from = await this.ownerOf(slot)
    const [fromId, toId] = await Promise.all([this.nodeId(from), this.nodeId(to)])
    await this.ask(to, ['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId])
    await this.ask(from, ['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId])
    for (;;) {
      const keys = await this.ask(from, ['CLUSTER', 'GETKEYSINSLOT', String(slot), '100']) as string[]
      if (keys.length === 0) break
      await this.ask(from, ['MIGRATE', '127.0.0.1', String(to), '', '0', '5000', 'KEYS', ...keys])
    }
    for (const node of this.nodes.filter((node) => node.running)) {
      await this.ask(node.port, ['CLUSTER', 'SETSLOT', String(slot), 'NODE', toId]).catch(() => {})
    }
    await this.untilHealthy()
  }

  /** Kills the node on `port` (SIGKILL), and resolves once the cluster is healthy without it (a replica took over). */
  async crash (port: number): Promise<void> {
    const node = this.nodes.find((candidate) => candidate.port === port) as RedisServer
    await node.stop('SIGKILL')
    // Until the others notice (cluster-node-timeout), they still say it serves its slots.
    await eventually(async () => !(await this.servedPorts()).includes(port), 'a replica to take over', 30_000)
    await this.untilHealthy(30_000)
  }

  /** The ports of the primaries serving slots, as a running node sees it. */
  private async servedPorts (): Promise<number[]> {
    const ranges = await this.ask(this.nodes.find((node) => node.running)?.port as number, ['CLUSTER', 'SLOTS']) as Array<[number, number, [string, number]]>
    return ranges.map((range) => range[2][1])
  }

  /** Waits until every node still running says the cluster is ok and agrees on who serves every slot. */
  async untilHealthy (timeoutMs = 20_000): Promise<void> {
    await eventually(async () => {
      const running = this.nodes.filter((node) => node.running)
      const answers = await Promise.all(running.map(async (node) => await this.ask(node.port, ['CLUSTER', 'INFO']).catch(() => '')))
      if (!answers.every((info) => /cluster_state:ok/.test(info as string))) return false
      const views = await Promise.all(running.map(async (node) => JSON.stringify(await this.ask(node.port, ['CLUSTER', 'SLOTS'])
        .then((slots) => (slots as Array<[number, number, [string, number]]>).map(([from, to, [, port]]) => [from, to, port])
          .sort((a, b) => a[0] - b[0])), () => '')))
      return views.every((view) => view === views[0])
    }, 'the cluster to be healthy', timeoutMs)
  }

  async ask (port: number, command: string[]): Promise<unknown> {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      return await client.call(command[0], command.slice(1))
    } finally {
      client.disconnect()
    }
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map(async (node) => await node.stop()))
    rmSync(this.dir, { recursive: true, force: true })
  }

  private async nodeId (port: number): Promise<string> {
    return (await this.ask(port, ['CLUSTER', 'MYID']) as string).trim()
  }

  private async startNode (): Promise<RedisServer> {
    const port = await clusterPort()
    const node = new RedisServer(port, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', '1000', '--dir', this.dir])
    await node.start()
    return node
  }
}

export async function startCluster (t: Teardown): Promise<RedisCluster> {
  const cluster = new RedisCluster()
  t.teardown(async () => await cluster.stop())
  await cluster.start()
  return cluster
}
