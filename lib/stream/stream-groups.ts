import type { FastifyError } from 'fastify'
import type { StreamLimits } from './stream-limits'
import type { ClosingConnections } from './closing-connections'
import type { ShutdownRetry } from './shutdown-retry'
import type { Stats } from '../observe/stats'
import { StreamGroup } from './stream-group'

/** How long a stream may stay quiet, fall behind, and wait for its client: set per plugin, or per route. */
export interface StreamTiming {
  heartbeatInterval: number
  maxBufferedBytes: number
  writeTimeout: number
  /** Ms after which a stream is closed (about: spread over its last tenth), so that it reconnects; 0: never. */
  maxStreamAge: number
}

/**
 * The open streams of one plugin instance, grouped by timing: the plugin's, and one group for each other timing
 * routes set in `config.sse`. Each group has its heartbeat timer; limits and shutdown span them all.
 */
export class StreamGroups {
  readonly limits: StreamLimits | undefined
  readonly stats: Stats
  /** The group of streams with the plugin's timing. */
  readonly main: StreamGroup
  private readonly byTiming = new Map<string, StreamGroup>()
  // The window of the `retry:` a stream closed for its lifetime is given.
  private readonly lifetimeRetry: ShutdownRetry | undefined

  constructor (timing: StreamTiming, limits: StreamLimits | undefined, stats: Stats, lifetimeRetry?: ShutdownRetry) {
    this.limits = limits
    this.stats = stats
    this.lifetimeRetry = lifetimeRetry
    this.main = this.group(timing)
  }

  /** The group of that timing, made on first use (when a route is added). */
  group ({ heartbeatInterval, maxBufferedBytes, writeTimeout, maxStreamAge }: StreamTiming): StreamGroup {
    const key = `${heartbeatInterval}/${maxBufferedBytes}/${writeTimeout}/${maxStreamAge}`
    let group = this.byTiming.get(key)
    if (group === undefined) {
      group = new StreamGroup(heartbeatInterval, maxBufferedBytes, writeTimeout, this.stats, this.limits, maxStreamAge,
        this.lifetimeRetry)
      this.byTiming.set(key, group)
    }
    return group
  }

  /** Why a new stream from that address may not be admitted now (limits count the streams of every group). */
  refusal (address: string): FastifyError | undefined {
    return this.limits?.refusal(address)
  }

  /** True once closeAll() began: a stream that would open after it is refused. */
  get closing (): boolean {
    return this.main.closing
  }

  /** Ends every stream of every group: see StreamGroup.closeAll(). */
  closeAll (connections: ClosingConnections, retry: ShutdownRetry): void {
    for (const group of this.byTiming.values()) group.closeAll(connections, retry)
  }
}
