import { before, teardown, test } from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { copyFile, cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import type { FastifyPluginAsync } from 'fastify'
import * as sourceErrors from '../lib/core/errors'

const repo = resolve(__dirname, '..')

interface Exports {
  (...args: unknown[]): unknown
  default: unknown
  fastifySseH2: unknown
  errors: Record<string, unknown>
  EventStream: unknown
  [key: symbol]: unknown
}

interface Layout {
  /** The package as `npm pack` would hold it: package.json and a fresh dist/, built from the sources now. */
  pkg: string
  /** An app that depends on it by name. */
  app: string
}

let layout: Layout

// A fresh build into a temporary package, never the checkout's dist/: what is tested is the code as it
// is now, and no other test run can see a half-written dist/.
before(async () => {
  const root = await mkdtemp(join(tmpdir(), 'fastify-sse-h2-exports-'))
  teardown(() => rm(root, { recursive: true, force: true }))
  const pkg = join(root, 'fastify-sse-h2')
  const app = join(root, 'app')
  await mkdir(pkg)
  await mkdir(join(app, 'node_modules'), { recursive: true })
  execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json',
    '--outDir', join(pkg, 'dist')], { cwd: repo, env: { ...process.env, NODE_OPTIONS: '' }, stdio: 'pipe' })
  await copyFile(join(repo, 'package.json'), join(pkg, 'package.json'))
  // Its dependencies (fastify-plugin, @fastify/error) and the app's fastify are the checkout's.
  await symlink(join(repo, 'node_modules'), join(pkg, 'node_modules'), 'dir')
  await symlink(pkg, join(app, 'node_modules', 'fastify-sse-h2'), 'dir')
  await writeFile(join(app, 'esm.mjs'), [
    "import sse, { fastifySseH2, errors, EventStream } from 'fastify-sse-h2'",
    "import * as namespace from 'fastify-sse-h2'",
    'export { sse, fastifySseH2, errors, EventStream, namespace }',
    "export { RedisStore } from 'fastify-sse-h2/redis'",
    "export { injectSSE } from 'fastify-sse-h2/testing'",
    ''
  ].join('\n'))
  layout = { pkg, app }
})

const requireBuilt = (): Exports => createRequire(join(layout.app, 'index.js'))('fastify-sse-h2') as Exports

test('the build emits JavaScript and type declarations', async (t) => {
  t.ok(existsSync(join(layout.pkg, 'dist', 'index.js')))
  t.ok(existsSync(join(layout.pkg, 'dist', 'index.d.ts')))
})

test('require() gives the plugin function, with .default, .fastifySseH2, .errors and .EventStream', async (t) => {
  const sse = createRequire(__filename)(layout.pkg) as Exports
  t.type(sse, 'function')
  t.equal(sse.default, sse)
  t.equal(sse.fastifySseH2, sse)
  t.equal(requireBuilt(), sse, 'by path or by package name, the same module')
  const codes = Object.keys(sourceErrors).sort()
  t.ok(codes.length > 0)
  t.same(Object.keys(sse.errors).sort(), codes, 'every error of lib/errors.ts')
  for (const code of codes) {
    const ErrorClass = sse.errors[code] as new (...args: unknown[]) => Error & { code: string }
    const error = new ErrorClass('a', 'b', 'c')
    t.equal(error.code, code)
    t.ok(error instanceof ErrorClass)
  }
  t.type(sse.EventStream, 'function')
  t.equal((sse.EventStream as { name: string }).name, 'EventStream')
})

test('import() gives the same default and named exports', async (t) => {
  const sse = requireBuilt()
  const esm = await import(pathToFileURL(join(layout.app, 'esm.mjs')).href) as Record<string, unknown> & {
    namespace: Record<string, unknown>
  }
  t.equal(esm.sse, sse, 'default import')
  t.equal(esm.fastifySseH2, sse)
  t.equal(esm.errors, sse.errors)
  t.equal(esm.EventStream, sse.EventStream)
  t.equal(esm.namespace.default, sse)
})

test('fastify-plugin metadata: name, Fastify range, and no encapsulation', async (t) => {
  const sse = requireBuilt()
  t.match(sse[Symbol.for('plugin-meta')], { name: 'fastify-sse-h2', fastify: '5.x' })
  t.equal(sse[Symbol.for('skip-override')], true)

  // Registered without fastify-plugin's skip-override, reply.sse would stay inside the plugin's own context.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse as unknown as FastifyPluginAsync)
  app.get('/has-sse', (request, reply) => ({ sse: typeof reply.sse }))
  app.get('/events', (request, reply) => reply.sse(['from the build']))
  t.same((await app.inject('/has-sse')).json(), { sse: 'function' }, 'routes of the registering app see reply.sse')
  const events = await app.inject('/events')
  t.equal(events.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(events.body, 'data: from the build\n\n', 'and the built plugin streams')
})

test('registering twice on one app fails with FST_SSE_ALREADY_REGISTERED', async (t) => {
  const sse = requireBuilt() as unknown as FastifyPluginAsync
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(sse)
  app.register(sse)
  await t.rejects(async () => await app.ready(), { code: 'FST_SSE_ALREADY_REGISTERED' })
})

test('fastify-sse-h2/redis gives the Redis store to require() and import(); the main entry never loads ioredis',
  async (t) => {
    const script = [
      "const sse = require('fastify-sse-h2')",
      "const loaded = () => Object.keys(require.cache).some((path) => path.includes('/node_modules/ioredis/'))",
      'const before = loaded()',
      "const { RedisStore } = require('fastify-sse-h2/redis')",
      'console.log(JSON.stringify({ plugin: typeof sse, before, store: typeof RedisStore, name: RedisStore.name }))'
    ].join('\n')
    const output = execFileSync(process.execPath, ['-e', script], { cwd: layout.app, env: { ...process.env, NODE_OPTIONS: '' } })
    t.same(JSON.parse(output.toString()), { plugin: 'function', before: false, store: 'function', name: 'RedisStore' })
    const esm = await import(pathToFileURL(join(layout.app, 'esm.mjs')).href) as { RedisStore: unknown }
    t.equal(esm.RedisStore, createRequire(join(layout.app, 'index.js'))('fastify-sse-h2/redis').RedisStore)
  })

test('fastify-sse-h2/testing gives injectSSE to require() and import(); the main entry never loads eventsource-parser',
  async (t) => {
    const script = [
      "const sse = require('fastify-sse-h2')",
      "const loaded = () => Object.keys(require.cache).some((path) => path.includes('/node_modules/eventsource-parser/'))",
      'const before = loaded()',
      "const { injectSSE } = require('fastify-sse-h2/testing')",
      // The app's Fastify is the checkout's.
      'const app = require(process.env.FASTIFY)()',
      'app.register(sse)',
      "app.register(async (app) => app.get('/', (request, reply) => reply.sse(['from the build'])))",
      'injectSSE(app, { url: \'/\' }).then(async (events) => {',
      '  const received = []',
      '  for await (const event of events) received.push(event)',
      '  console.log(JSON.stringify({ plugin: typeof sse, before, after: loaded(), received }))',
      '  await app.close()',
      '})'
    ].join('\n')
    const output = execFileSync(process.execPath, ['-e', script], {
      cwd: layout.app, env: { ...process.env, NODE_OPTIONS: '', FASTIFY: join(repo, 'node_modules', 'fastify') }
    })
    t.same(JSON.parse(output.toString()), { plugin: 'function', before: false, after: true, received: [{ data: 'from the build' }] })
    const esm = await import(pathToFileURL(join(layout.app, 'esm.mjs')).href) as { injectSSE: unknown }
    t.equal(esm.injectSSE, createRequire(join(layout.app, 'index.js'))('fastify-sse-h2/testing').injectSSE)
  })

test('without ioredis installed, new RedisStore({ redis }) fails with a code that says to install it', async (t) => {
  // The package alone, with its own dependencies and not ioredis, as in an app that never installed it.
  const bare = join(layout.pkg, '..', 'without-ioredis')
  await mkdir(join(bare, 'node_modules', '@fastify'), { recursive: true })
  await cp(join(layout.pkg, 'dist'), join(bare, 'dist'), { recursive: true })
  await copyFile(join(repo, 'package.json'), join(bare, 'package.json'))
  for (const dependency of ['fastify-plugin', '@fastify/error']) {
    await symlink(join(repo, 'node_modules', dependency), join(bare, 'node_modules', dependency), 'dir')
  }
  const script = [
    "const { RedisStore } = require('./dist/redis.js')",
    'try {',
    "  new RedisStore({ redis: 'redis://127.0.0.1:6379' })",
    '} catch (error) {',
    '  console.log(JSON.stringify({ code: error.code, message: error.message, cause: error.cause.code }))',
    '}'
  ].join('\n')
  const output = execFileSync(process.execPath, ['-e', script], {
    cwd: bare, env: { ...process.env, NODE_OPTIONS: '' }
  })
  t.same(JSON.parse(output.toString()), {
    code: 'FST_SSE_IOREDIS_MISSING',
    message: 'fastify-sse-h2: RedisStore needs ioredis, which is not installed: npm install ioredis (an optional peer ' +
      'dependency of fastify-sse-h2)',
    cause: 'MODULE_NOT_FOUND'
  })
})
