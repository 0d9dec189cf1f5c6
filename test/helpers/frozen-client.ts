import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { resolve } from 'node:path'
import type { TestServer } from './server'
import { within } from './wait'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

const CLIENT = resolve(__dirname, '../fixtures/stream-client.js')

/** A client process holding event streams, which the test can freeze (SIGSTOP) for real. */
export class FrozenClient {
  private readonly child: ChildProcess

  constructor (child: ChildProcess) {
    this.child = child
  }

  /** Stops the process: it reads nothing more and answers nothing, but its connections stay open. */
  freeze (): void {
    this.child.kill('SIGSTOP')
  }

  /** Lets it run again, then ends it. */
  async end (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = once(this.child, 'exit')
    this.child.kill('SIGCONT')
    this.child.kill('SIGKILL')
    await within(exited, 'the client process to exit')
  }
}

/**
 * Starts a client process that opens `count` streams of `path` (over HTTP/2 on one session, or over
 * HTTP/1.1 on a connection each), and resolves once their response headers are in. Ended when the test ends.
 */
export async function startFrozenClient (t: Teardown, server: TestServer, path: string, count = 1): Promise<FrozenClient> {
  const protocol = server.protocol === 'http1' || server.protocol === 'http1-tls' ? 'http1' : server.protocol
  const child = fork(CLIENT, [protocol, server.origin, path, String(count)], {
    env: { ...process.env, FROZEN_CLIENT_CA: server.ca ?? '' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc']
  })
  const client = new FrozenClient(child)
  t.teardown(() => client.end())
  await within(new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve())
    child.once('exit', (code, signal) => reject(new Error(`the client process exited (${String(code ?? signal)})`)))
  }), `a client process with ${count} streams of ${path}`)
  return client
}
