// fastify-sse-h2/testing: open a route's stream with app.inject() and read its events, for your own tests.
export { injectSSE, InjectedStream } from './lib/testing/inject-sse'
export type { InjectSSEOptions, InjectedEvent, InjectableApp } from './lib/testing/inject-sse'
