import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { once } from 'node:events'
import { DEFAULT_TIMEOUT_MS, within } from './wait'

/** A real redis-server on a free port of 127.0.0.1, no persistence; stop() and start() again for outages. */
export class RedisServer {
  readonly port: number
  private readonly args: readonly string[]
  private process: ChildProcess | undefined

  /** `args`: more of redis-server's options (a cluster node's). */
  constructor (port: number, args: readonly string[] = []) {
    this.port = port
    this.args = args
  }

  get running (): boolean {
    return this.process !== undefined
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start (): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'no', '--protected-mode', 'no', ...this.args], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.process = child
    let output = ''
    await within(new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      })
      child.once('exit', (code) => reject(new Error(`redis-server exited (${String(code)}): ${output}`)))
    }), 'redis-server to be ready')
    child.stdout?.resume()
  }

  /** SIGTERM: Redis closes its connections and exits; SIGKILL: a crash, as a failover test wants. */
  async stop (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.process
    if (child === undefined || child.exitCode !== null) return
    this.process = undefined
    child.kill(signal)
    await within(once(child, 'exit'), 'redis-server to stop')
  }
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export async function startRedis (t: { teardown: (fn: () => unknown) => void }): Promise<RedisServer> {
  const redis = new RedisServer(await freePort())
  await redis.start()
  t.teardown(() => redis.stop())
  return redis
}

/**
 * Resolves once `check()` holds, looking again every 20 ms; rejects after `timeoutMs`. For what no event tells: the
 * state of Redis, or of a store in another part of the app.
 */
export async function eventually (check: () => boolean | Promise<boolean>, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
