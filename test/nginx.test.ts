import { test, type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http2 from 'node:http2'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'
import { startServer, testCertificate, type TestServer } from './helpers/server'
import { openStream } from './helpers/client'
import { freePort } from './helpers/redis'
import { within } from './helpers/wait'
import { binaryPath, missingService, mustSkip } from './helpers/services'

// The server block docs/operating.md gives for nginx ("Behind nginx"), run as written against the nginx Debian ships:
// h2 with TLS in front, HTTP/1.1 to the app behind. Only the port, the upstream's port and the certificate's paths are
// the test's own.

const nginxMissing = mustSkip(missingService('nginx'))
const chromiumMissing = mustSkip(missingService('chromium'))
const DOCS = resolve(__dirname, '../docs/operating.md')
// Well under the heartbeat (15 s by default): before a stream wrote its first bytes with its headers, nginx held the
// headers back until the first heartbeat.
const OPEN_BOUND_MS = 3000

/** The ```nginx block under "## Behind nginx" in docs/operating.md. */
function recipe (): string {
  const page = readFileSync(DOCS, 'utf8')
  const section = page.slice(page.indexOf('## Behind nginx'))
  const match = /```nginx\n([\s\S]*?)```/.exec(section)
  if (match === null) throw new Error('docs/operating.md, "Behind nginx", has no nginx block')
  return match[1]
}

interface Nginx {
  origin: string
  port: number
}

/** nginx in front of `upstream`, configured with the docs' server block; stopped when the test ends. */
async function startNginx (t: Test, upstream: TestServer): Promise<Nginx> {
  const dir = await mkdtemp(join(tmpdir(), 'nginx-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const { key, cert } = await testCertificate()
  await writeFile(join(dir, 'cert.pem'), cert)
  await writeFile(join(dir, 'key.pem'), key)
  const port = await freePort()
  const upstreamPort = new URL(upstream.origin).port
  const server = recipe()
    .replace(/listen 443 /, `listen 127.0.0.1:${port} `)
    .replace(/proxy_pass http:\/\/127\.0\.0\.1:3000;/, `proxy_pass http://127.0.0.1:${upstreamPort};`)
    .replace(/ssl_certificate +\S+;/, `ssl_certificate ${join(dir, 'cert.pem')};`)
    .replace(/ssl_certificate_key +\S+;/, `ssl_certificate_key ${join(dir, 'key.pem')};`)
  const temp = join(dir, 'temp')
  await writeFile(join(dir, 'nginx.conf'), [
    // As root (CI), the workers run as root too, so that they read what the test wrote.
    process.getuid?.() === 0 ? 'user root;' : '',
    'worker_processes 1;',
    `pid ${join(dir, 'nginx.pid')};`,
    `error_log ${join(dir, 'error.log')} warn;`,
    'events { worker_connections 256; }',
    'http {',
    '  access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${temp}-${kind};`),
    server,
    '}'
  ].join('\n'))
  const nginx = spawn(binaryPath('nginx') as string, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  nginx.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  t.teardown(async () => {
    if (nginx.exitCode !== null) return
    nginx.kill('SIGQUIT')
    await within(once(nginx, 'exit'), 'nginx to stop')
  })
  await within(listening(port, () => nginx.exitCode === null ? undefined : stderr), 'nginx to listen')
  t.equal(stderr.replace(/.*\[notice\].*\n?/g, ''), '', 'nginx takes the block as written, with no warning')
  return { origin: `https://127.0.0.1:${port}`, port }
}

/** Resolves once the port takes connections; `exited` says what nginx said if it is gone. */
async function listening (port: number, exited: () => string | undefined): Promise<void> {
  for (;;) {
    const said = exited()
    if (said !== undefined) throw new Error(`nginx exited: ${said}`)
    const reached = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (reached) return
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function app (t: Test): Promise<TestServer> {
  return await startServer(t, 'http1', (app) => {
    app.get('/events/quiet', (request, reply) => reply.sse(app.sse.channel('quiet')))
    app.get('/events/page', (request, reply) => { reply.type('text/html').send('<!doctype html><title>behind nginx</title>') })
  })
}

test('behind nginx (h2 in front, HTTP/1.1 behind), the docs\' block as written', { skip: nginxMissing }, async (t) => {
  const upstream = await app(t)
  const nginx = await startNginx(t, upstream)
  const proxied = { ...upstream, protocol: 'h2' as const, origin: nginx.origin, ca: (await testCertificate()).cert }

  await t.test('a stream with nothing to say yet is seen open at once', async (t) => {
    const started = Date.now()
    const client = await openStream(t, proxied, '/events/quiet', { timeoutMs: OPEN_BOUND_MS })
    t.equal(client.status, 200)
    t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
    t.equal(client.headers['cache-control'], 'no-cache, no-transform')
    t.comment(`headers through nginx after ${Date.now() - started} ms`)
    await upstream.app.sse.channel('quiet').publish('first')
    await client.waitForEvents(1)
    t.same(client.events.map((event) => event.data), ['first'])
  })

  await t.test('a client that comes back with its Last-Event-ID through nginx resumes exactly', async (t) => {
    const channel = upstream.app.sse.channel('quiet')
    const last = await channel.publish('second')
    await channel.publish('third')
    await channel.publish('fourth')
    const client = await openStream(t, proxied, '/events/quiet', { headers: { 'last-event-id': last } })
    await client.waitForEvents(2)
    t.same(client.events.map((event) => event.data), ['third', 'fourth'])
  })

  await t.test('Chromium\'s EventSource fires open before any event', { skip: chromiumMissing }, async (t) => {
    const browser = await chromium.launch({
      executablePath: binaryPath('chromium'),
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--ignore-certificate-errors']
    })
    t.teardown(async () => await within(browser.close(), 'the browser to close'))
    const page = await browser.newPage()
    await page.goto(`${nginx.origin}/events/page`)
    const openedAfter = await within(page.evaluate(`new Promise((resolve) => {
      const started = performance.now()
      const source = new EventSource('/events/quiet')
      source.onopen = () => { resolve(performance.now() - started); source.close() }
    })`) as Promise<number>, 'EventSource open through nginx', OPEN_BOUND_MS + 2000)
    t.ok(openedAfter < OPEN_BOUND_MS, `open after ${Math.round(openedAfter)} ms`)
  })
})

test('an h2 client straight to nginx\'s port speaks h2', { skip: nginxMissing }, async (t) => {
  const upstream = await app(t)
  const nginx = await startNginx(t, upstream)
  const session = http2.connect(nginx.origin, { ca: (await testCertificate()).cert })
  t.teardown(() => session.close())
  await within(once(session, 'connect'), 'an h2 session with nginx')
  t.equal(session.alpnProtocol, 'h2', 'the docs\' `listen ... ssl http2` serves h2')
})
