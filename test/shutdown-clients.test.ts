import { test, type Test } from 'tap'
import { spawn } from 'node:child_process'
import { writeFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { startServer, type Protocol, type TestServer } from './helpers/server'
import { signalled, within } from './helpers/wait'
import { eventually } from './helpers/redis'
import type { EventStream } from '../index'

// app.close() is bounded whatever the client's HTTP stack leaves open. undici (under Node's fetch and the
// `eventsource` package) opens a spare connection when a stream it read is aborted, and never sends a byte on it:
// Node's server.close() waited for it until headersTimeout, about 70 s. The clients run in a process of their own,
// on Node's fetch as it ships.

// Ends streams, then gives clients SHUTDOWN_GRACE_MS (1 s) to let go: well under this on a loaded machine.
const CLOSE_BOUND_MS = 5000
const PROTOCOLS_UNDER_TEST: Protocol[] = ['http1', 'http1-tls']
const CLIENT = resolve(__dirname, 'fixtures/fetch-client.mjs')

type Client = 'eventsource' | 'fetch'

interface ClientProcess {
  /** Closes the stream as a page would; resolves once it did. */
  leave: () => Promise<void>
}

/** Starts the client on the stream and waits for its first event. */
async function follow (t: Test, server: TestServer, client: Client): Promise<ClientProcess> {
  const env = { ...process.env }
  if (server.ca !== undefined) {
    const dir = await mkdtemp(join(tmpdir(), 'fetch-client-'))
    t.teardown(async () => await rm(dir, { recursive: true, force: true }))
    env.NODE_EXTRA_CA_CERTS = join(dir, 'ca.pem')
    await writeFile(env.NODE_EXTRA_CA_CERTS, server.ca)
  }
  const child = spawn(process.execPath, [CLIENT, `${server.origin}/feed`, client], { env, stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill() })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async (): Promise<string> => String((await within(lines.next(), 'the client process to answer')).value)
  t.equal(await next(), 'open', `${client} read the first event`)
  return {
    leave: async () => {
      child.stdin.write('leave\n')
      t.equal(await next(), 'left')
    }
  }
}

for (const protocol of PROTOCOLS_UNDER_TEST) {
  for (const client of ['eventsource', 'fetch'] as const) {
    for (const leaves of [true, false]) {
      test(`${protocol}, ${client}: app.close() is bounded after a client that ${leaves ? 'left' : 'is still reading'}`, async (t) => {
        const ended = signalled()
        const server = await startServer(t, protocol, (app) => {
          app.get('/feed', (request, reply) => {
            const stream: EventStream = reply.sse()
            stream.send('hello')
            stream.signal.addEventListener('abort', () => ended.resolve(), { once: true })
          })
        }, { plugin: { shutdownRetry: { min: 1, max: 1 } } })
        let accepted = 0
        server.app.server.on(protocol === 'http1' ? 'connection' : 'secureConnection', () => accepted++)
        const clientProcess = await follow(t, server, client)
        if (leaves) {
          await clientProcess.leave()
          await within(ended.promise, 'the server to see the client leave')
          await eventually(() => accepted === 2, 'undici\'s spare connection, opened when the stream is aborted')
        }
        const started = Date.now()
        await within(server.app.close(), `app.close() within ${CLOSE_BOUND_MS} ms`, CLOSE_BOUND_MS)
        t.pass(`closed in ${Date.now() - started} ms`)
      })
    }
  }
}
