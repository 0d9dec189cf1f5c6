import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { resolve } from 'node:path'
import type { InstanceConfig } from '../fixtures/redis-instance'
import type { TestServer } from './server'
import { within } from './wait'

const INSTANCE = resolve(__dirname, '../fixtures/redis-instance.ts')

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** An instance of the app in a process of its own (test/fixtures/redis-instance.ts), with its own Redis connections. */
export class InstanceProcess {
  readonly origin: string
  readonly protocol: InstanceConfig['protocol']
  readonly ca = undefined
  private readonly child: ChildProcess
  private asked = 0

  constructor (child: ChildProcess, origin: string, protocol: InstanceConfig['protocol']) {
    this.child = child
    this.origin = origin
    this.protocol = protocol
  }

  /** What the test's clients connect to. */
  get server (): TestServer {
    return this as unknown as TestServer
  }

  /** Publishes the events in order, all asked for at once; resolves to their ids. */
  async publish (channel: string, messages: Array<string | { data: string, id?: string }>, timeoutMs?: number): Promise<string[]> {
    const events = messages.map((message) => typeof message === 'string' ? { data: message } : message)
    const { ids } = await this.ask({ type: 'publish', channel, messages: events }, timeoutMs) as { ids: string[] }
    return ids
  }

  /** Publishes `${prefix}0`, `${prefix}1`, ... at `rate` a second; resolves to their ids (null where one failed). */
  async steady (channel: string, count: number, rate: number, prefix: string): Promise<{ ids: Array<string | null>, failures: string[] }> {
    return await this.ask({ type: 'steady', channel, count, rate, prefix }, 10_000 + (count * 1000) / rate) as {
      ids: Array<string | null>
      failures: string[]
    }
  }

  get pid (): number {
    return this.child.pid as number
  }

  /** SIGSTOP freezes it (a stalled process: it reads nothing, answers nothing), SIGCONT lets it go on. */
  signal (signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.child.kill(signal)
  }

  /** SIGKILL: it dies without a word, its connections reset by the kernel; resolves once it has exited. */
  async kill (): Promise<void> {
    const exited = once(this.child, 'exit')
    this.child.kill('SIGKILL')
    await within(exited, 'the killed instance to exit')
  }

  /** `app.sse.tagged(tag)[action](channel)` on this instance: what it resolved to, and how long it took there (ms). */
  async steer<Result> (action: 'close' | 'subscribe' | 'unsubscribe' | 'count', tag: string, channel?: string): Promise<{ result: Result, ms: number }> {
    return await this.ask({ type: 'steer', action, tag, channel }) as { result: Result, ms: number }
  }

  /** `app.sse.channel(channel).presence()` on this instance, and how long it took there (ms). */
  async presence (channel: string): Promise<{ result: { subscribers: number, unanswered: string[] }, ms: number }> {
    return await this.ask({ type: 'presence', channel }) as { result: { subscribers: number, unanswered: string[] }, ms: number }
  }

  async close (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    // A frozen instance cannot answer: it is let go on first.
    this.child.kill('SIGCONT')
    const exited = once(this.child, 'exit')
    await this.ask({ type: 'close' }).catch(() => this.child.kill('SIGKILL'))
    await within(exited, 'the instance process to exit')
  }

  private async ask (message: object, timeoutMs = 10_000): Promise<unknown> {
    const ask = ++this.asked
    return await within(new Promise((resolve, reject) => {
      const onMessage = (answer: { ask?: number, error?: string }): void => {
        if (answer.ask !== ask) return
        this.child.off('message', onMessage)
        if (answer.error !== undefined) reject(new Error(answer.error))
        else resolve(answer)
      }
      this.child.on('message', onMessage)
      this.child.send({ ...message, ask })
    }), `the instance to answer ${JSON.stringify(message).slice(0, 80)}`, timeoutMs)
  }
}

/**
 * Starts an instance process and resolves once it listens; closed when the test ends. It runs the TypeScript sources
 * with the test's own loader, so that what it runs counts for coverage.
 */
export async function startInstance (t: Teardown, config: InstanceConfig): Promise<InstanceProcess> {
  const child = fork(INSTANCE, [JSON.stringify(config)], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const instance = within(new Promise<InstanceProcess>((resolve, reject) => {
    child.once('message', (message: { type: string, origin: string }) => resolve(new InstanceProcess(child, message.origin, config.protocol)))
    child.once('exit', (code) => reject(new Error(`the instance process exited (${String(code)})`)))
  }), 'an instance process to listen', 60_000)
  // One that never listened is killed: left running, it would hold the test runner's output open.
  const started = await instance.catch((error: unknown) => {
    child.kill('SIGKILL')
    throw error
  })
  t.teardown(async () => await started.close())
  return started
}
