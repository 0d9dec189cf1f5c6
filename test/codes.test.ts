import { test } from 'tap'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import ts from 'typescript'
import { CLOSE_CODES, REFUSAL_CODES, REPLAY_OUTCOMES } from '../lib/core/codes'
import { DEFAULT_HISTORY_MAX_AGE, DEFAULT_HISTORY_SIZE } from '../lib/core/defaults'
import Fastify from 'fastify'
import sse, { errors, MemoryStore } from '../index'
import { storeOver } from './helpers/store-over'
import { Stats } from '../lib/observe/stats'

// The lists that must agree are written once (lib/core/codes.ts, lib/core/defaults.ts): what is made from them is
// checked here against what is written by hand (error codes, doc comments).

const repo = resolve(__dirname, '..')

test('every close and refusal code is an error the plugin exports', async (t) => {
  for (const code of [...CLOSE_CODES, ...REFUSAL_CODES]) {
    t.equal(typeof (errors as Record<string, unknown>)[code], 'function', `${code} is in errors`)
  }
})

test('stats() counts every code of the lists, from 0', async (t) => {
  const stats = new Stats().snapshot()
  t.same(Object.keys(stats.streams.closed), CLOSE_CODES)
  t.same(Object.keys(stats.streams.refused), REFUSAL_CODES)
  t.same(Object.keys(stats.replays), REPLAY_OUTCOMES)
  t.ok(Object.values({ ...stats.streams.closed, ...stats.streams.refused, ...stats.replays }).every((n) => n === 0))
})

/** The `@default` tag of each member of the interface `name` declared in `file`, by member. */
function defaultsOf (file: string, name: string): Map<string, string> {
  const source = ts.createSourceFile(file, readFileSync(join(repo, file), 'utf8'), ts.ScriptTarget.Latest, true)
  const found = new Map<string, string>()
  const visit = (node: ts.Node): void => {
    if (ts.isInterfaceDeclaration(node) && node.name.text === name) {
      for (const member of node.members) {
        const tag = ts.getJSDocTags(member).find((jsDoc) => jsDoc.tagName.text === 'default')
        if (tag !== undefined && member.name !== undefined) found.set(member.name.getText(source), ts.getTextOfJSDocComment(tag.comment) ?? '')
      }
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

test('the history defaults the doc comments state are the ones the stores use', async (t) => {
  const places: Array<[string, string]> = [
    ['lib/fastify/types.ts', 'FastifySseOptions'],
    ['lib/stores/memory-store.ts', 'MemoryStoreOptions'],
    ['lib/stores/redis/store.ts', 'RedisStoreOptions']
  ]
  for (const [file, name] of places) {
    const defaults = defaultsOf(file, name)
    t.match(defaults.get('historySize'), new RegExp(`^${DEFAULT_HISTORY_SIZE}\\b`), `${name}.historySize`)
    t.match(defaults.get('historyMaxAge'), new RegExp(`^${DEFAULT_HISTORY_MAX_AGE}\\b`), `${name}.historyMaxAge`)
  }
})

/** The codes in the first column of the table under `heading` in docs/operating.md, in order. */
function tableCodes (heading: string): string[] {
  const page = readFileSync(join(repo, 'docs/operating.md'), 'utf8')
  const start = page.indexOf(`### ${heading}\n`)
  if (start === -1) throw new Error(`docs/operating.md has no "### ${heading}"`)
  const section = page.slice(start + heading.length + 5).split(/\n#{2,3} /)[0]
  return [...section.matchAll(/^\| `([\w]+)` \|/gm)].map((match) => match[1])
}

test('the docs\' tables list exactly the codes of the lists', async (t) => {
  t.same(tableCodes('Close codes').sort(), [...CLOSE_CODES].sort(), 'docs/operating.md, Close codes')
  t.same(tableCodes('Refusal codes').sort(), [...REFUSAL_CODES].sort(), 'docs/operating.md, Refusal codes')
  t.same(tableCodes('Replay outcomes').sort(), [...REPLAY_OUTCOMES].sort(), 'docs/operating.md, Replay outcomes')
})

test('a stream refused because its store cannot say where a channel starts is counted under its code', async (t) => {
  const inner = new MemoryStore()
  const store = storeOver(inner, { head: async () => await Promise.reject(new Error('store away')) })
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(sse, { store })
  app.get('/news', (request, reply) => reply.sse(app.sse.channel('news')))
  for (const accept of ['*/*', 'text/event-stream']) {
    const response = await app.inject({ url: '/news', headers: { accept } })
    t.equal(response.headers['sse-refused'] ?? String(response.statusCode), accept === '*/*' ? '503' : 'FST_SSE_CHANNEL_UNAVAILABLE')
  }
  const { refused } = app.sse.stats().streams
  t.equal(refused.FST_SSE_CHANNEL_UNAVAILABLE, 2, 'both refusals, whatever their form (it was NaN)')
  t.ok(Object.values(refused).every(Number.isSafeInteger), 'every count a number')
})
