import type { Cluster, Redis } from 'ioredis'

/** A client of one Redis, or of a Redis Cluster: the store works with either. */
export type RedisClient = Redis | Cluster

/**
 * One of the store's own connections, whose commands fail at once while Redis is away rather than wait for it, and
 * fail after `timeout` ms when Redis does not answer. Commands go out in the order they were asked for, also when
 * they wait for the first connection: a read asked before a publish is answered before it.
 */
export class StoreConnection {
  readonly client: RedisClient
  private readonly timeout: number
  // Commands waiting for the connection to be ready, behind the first of them.
  private waiting: Promise<void> | undefined
  private stopWaiting: ((error: Error) => void) | undefined
  // Since it was last ready, a connection attempt failed or the connection dropped: commands fail at once.
  private lost = false
  // Commands that outlived the timeout and are still unanswered: Redis is not answering, commands fail at once.
  private stalled = 0
  private closed = false

  constructor (client: RedisClient, timeout: number) {
    this.client = client
    this.timeout = timeout
    client.on('error', noop)
    client.on('ready', () => { this.lost = false })
    client.on('close', () => {
      // A connection attempt that failed fails the commands waiting for it, at once.
      this.lost = true
      this.stopWaiting?.(new Error('the Redis connection closed'))
    })
  }

  /**
   * Sends `command` when the connection is ready: at once, in this call, when it is. Rejects with `unavailable(reason)`
   * while Redis is away, and with `timedOut()` when it does not answer in time (the command may still be applied).
   */
  send<T> (command: () => Promise<T>, unavailable: (reason: string, cause?: unknown) => Error, timedOut: () => Error): Promise<T> {
    const reason = this.whyNot()
    if (reason !== undefined) return Promise.reject(unavailable(reason))
    return this.bounded(command, this.waitForReady(), unavailable, timedOut)
  }

  /** Lets go of the commands waiting for the connection, and of the connection: QUIT if Redis answers in time. */
  async close (): Promise<void> {
    this.closed = true
    this.stopWaiting?.(new Error('the store was closed'))
    const client = this.client
    if (client.status === 'ready' && this.stalled === 0) await this.bounded(async () => await client.quit(), undefined, quitFailed, quitFailed).catch(noop)
    client.disconnect()
  }

  private whyNot (): string | undefined {
    if (this.closed) return 'the store is closed'
    if (this.stalled > 0) return `Redis has not answered for more than ${this.timeout} ms`
    const status = this.client.status
    if (status === 'ready' || status === 'wait') return undefined
    // The first connection is waited for: a store made as the app starts takes publishes at once.
    if ((status === 'connecting' || status === 'connect') && !this.lost) return undefined
    return `the Redis connection is ${status === 'connect' || status === 'connecting' ? 'reconnecting' : status}`
  }

  private waitForReady (): Promise<void> | undefined {
    if (this.waiting === undefined && this.client.status === 'ready') return undefined
    if (this.client.status === 'wait') this.client.connect().catch(noop)
    // One listener however many commands wait, released at once by close().
    this.waiting ??= new Promise<void>((resolve, reject) => {
      const onReady = (): void => {
        this.waiting = undefined
        this.stopWaiting = undefined
        resolve()
      }
      this.client.once('ready', onReady)
      this.stopWaiting = (error) => {
        this.client.removeListener('ready', onReady)
        this.waiting = undefined
        reject(error)
      }
    })
    return this.waiting
  }

  /**
   * The command, sent once `waiting` is over, within the timeout. One still waiting for the connection then is never
   * sent; one sent and unanswered then may still be applied.
   */
  private async bounded<T> (command: () => Promise<T>, waiting: Promise<void> | undefined,
    unavailable: (reason: string, cause?: unknown) => Error, timedOut: () => Error): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    let sent = false
    let late = false
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        late = true
        if (!sent) {
          // Redis accepted no connection in time: this command and the others waiting fail, and the next at once,
          // until it does.
          this.lost = true
          const reason = `no connection to Redis within ${this.timeout} ms`
          this.stopWaiting?.(new Error(reason))
          reject(unavailable(reason))
          return
        }
        this.stalled++
        reject(timedOut())
      }, this.timeout)
    })
    const send = (): Promise<T> => {
      // The connection became ready in the very turn the timeout fired, before this ran: the command was refused.
      /* c8 ignore next */
      if (late) return new Promise<T>(noop)
      sent = true
      return command()
    }
    const answered = (waiting === undefined ? send() : waiting.then(send)).then((value) => value, (error: Error) => {
      throw unavailable(error.message, error)
    }).finally(() => {
      clearTimeout(timer)
      if (late && sent) this.stalled--
    })
    return await Promise.race([answered, timeout])
  }
}

function quitFailed (): Error {
  return new Error('QUIT failed')
}

export function noop (): void {}
