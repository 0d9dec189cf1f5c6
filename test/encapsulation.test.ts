import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import sse, { errors } from '../index'

async function readyError (app: FastifyInstance): Promise<unknown> {
  return await app.ready().then(() => undefined, (error: unknown) => error)
}

test('registered in sibling contexts: each context has its own channels and options', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const contexts: FastifyInstance[] = []
  for (const [prefix, retry] of [['/a', 100], ['/b', 200]] as const) {
    app.register(async (child) => {
      await child.register(sse, { retry })
      contexts.push(child)
      child.get('/events', (request, reply) => reply.sse([]))
    }, { prefix })
  }
  await app.ready()
  t.not(contexts[0].sse, contexts[1].sse)
  t.not(contexts[0].sse.channel('news'), contexts[1].sse.channel('news'), 'a channel of one context is not the other\'s')
  t.match((await app.inject('/a/events')).body, /^retry: 100\n/)
  t.match((await app.inject('/b/events')).body, /^retry: 200\n/)
})

test('registered twice in one context, or in a context inside one that has it, in either order: FST_SSE_ALREADY_REGISTERED', async (t) => {
  const setups: Array<[string, (app: FastifyInstance) => void, RegExp]> = [
    ['twice in one context', (app) => { app.register(sse); app.register(sse) }, /already registered in this context/],
    ['in a child of a context that has it', (app) => {
      app.register(sse)
      app.register(async (child) => { await child.register(sse) })
    }, /already registered in a parent context/],
    ['in a grandchild', (app) => {
      app.register(sse)
      app.register(async (child) => { child.register(async (grandchild) => { await grandchild.register(sse) }) })
    }, /already registered in a parent context/],
    ['in a parent after a child', (app) => {
      app.register(async (child) => { await child.register(sse) })
      app.register(sse)
    }, /already registered in an encapsulated context inside this one/]
  ]
  for (const [name, setup, message] of setups) {
    const app = Fastify()
    setup(app)
    const error = await readyError(app)
    t.ok(error instanceof errors.FST_SSE_ALREADY_REGISTERED, name)
    t.match(error, { code: 'FST_SSE_ALREADY_REGISTERED', message }, name)
    await app.close()
  }
})

test('registered only in a child context: the routes there stream; elsewhere reply.sse() and app.sse fail with a code', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(async (child) => {
    await child.register(sse)
    child.get('/inside', (request, reply) => reply.sse(['hello']))
  })
  app.register(async (sibling) => {
    sibling.get('/sibling', (request, reply) => reply.sse(['hello']))
  })
  app.get('/root', (request, reply) => reply.sse(['hello']))
  app.get('/wants', async (request) => ({ wants: request.wantsEventStream }))
  await app.ready()
  t.equal((await app.inject('/inside')).body, 'data: hello\n\n')
  for (const path of ['/root', '/sibling']) {
    const response = await app.inject(path)
    t.equal(response.statusCode, 500, path)
    t.match(response.json(), { code: 'FST_SSE_NOT_REGISTERED', message: /reply\.sse\(\) was used where the plugin is not registered/ })
  }
  t.throws(() => app.sse.channel('news'), errors.FST_SSE_NOT_REGISTERED)
  t.throws(() => app.sse.store, { code: 'FST_SSE_NOT_REGISTERED', message: /app\.sse\.store/ })
  t.same((await app.inject({ url: '/wants', headers: { accept: 'text/event-stream' } })).json(), { wants: true },
    'request.wantsEventStream is the same everywhere')
})

test('a second sibling registration after the first child one is its own instance, not a conflict', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(async (child) => { await child.register(sse) })
  app.register(async (child) => { await child.register(sse) })
  t.equal(await readyError(app), undefined)
})

test('decorators of the same names that the root has already are left alone', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  // Another plugin's decorators of these names (the types are ours, hence the casts).
  app.decorate('sse', 'the root\'s own' as never)
  app.decorateReply('sse', function own () { return 'the root\'s own' } as never)
  app.decorateRequest('wantsEventStream', { getter: () => 'the root\'s own' } as never)
  app.register(async (child) => { await child.register(sse) })
  app.get('/', async (request, reply) => [app.sse, (reply.sse as unknown as () => string)(), request.wantsEventStream])
  t.same((await app.inject('/')).json(), ['the root\'s own', 'the root\'s own', 'the root\'s own'])
})
