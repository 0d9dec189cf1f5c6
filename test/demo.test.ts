import { test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { within } from './helpers/wait'

const SERVER = resolve(__dirname, '../examples/demo/server.js')

/** `npm run demo`'s server, started with `env`, until it exits: its exit code and what it printed on stderr. */
async function runDemo (env: Record<string, string>): Promise<{ code: number | null, stderr: string }> {
  const child = spawn(process.execPath, [SERVER], { env: { ...process.env, NODE_OPTIONS: '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const [code] = await within(once(child, 'exit'), 'the demo to exit') as [number | null]
  return { code, stderr }
}

test('npm run demo with a port it cannot use says so in one line, with no stack trace', async (t) => {
  for (const [name, value] of [['PORT', 'abc'], ['HTTP1_PORT', '70000'], ['PORT', '-1'], ['PORT', '1.5']]) {
    const { code, stderr } = await runDemo({ [name]: value })
    t.equal(code, 1, `${name}=${value}: exits with 1`)
    t.equal(stderr, `${name} must be a port number (0 to 65535), not "${value}": e.g. ${name}=${name === 'PORT' ? 9443 : 9080} ` +
      'npm run demo\n', `${name}=${value}: one line that says what to give`)
  }
  const taken = createServer()
  t.teardown(() => taken.close())
  taken.listen(0, '127.0.0.1')
  await once(taken, 'listening')
  const { port } = taken.address() as { port: number }
  const { code, stderr } = await runDemo({ PORT: String(port), HTTP1_PORT: '0', HOST: '127.0.0.1' })
  t.equal(code, 1)
  t.match(stderr, /^listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+: another program uses that port\. Choose others, e\.g\. PORT=9443 HTTP1_PORT=9080 npm run demo\n$/,
    'a port in use: one line')
})
