import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { generate } from 'selfsigned'
import type { AddressInfo } from 'node:net'
import sse from '../../index'
import type { FastifySseOptions } from '../../index'
import { LogRecorder } from './logs'

/**
 * How a test speaks to the server:
 * - `h2c`: HTTP/2 without TLS;
 * - `h2`: HTTP/2 over TLS (a certificate made for the test run), the server allowing HTTP/1.1 too;
 * - `http1-tls`: that same TLS server, spoken to over HTTP/1.1;
 * - `http1`: a plain HTTP/1.1 server.
 */
export type Protocol = 'h2c' | 'h2' | 'http1-tls' | 'http1'
export const PROTOCOLS: Protocol[] = ['h2c', 'h2', 'http1-tls', 'http1']

export function isHttp2 (protocol: Protocol): boolean {
  return protocol === 'h2c' || protocol === 'h2'
}

export function isTls (protocol: Protocol): boolean {
  return protocol === 'h2' || protocol === 'http1-tls'
}

export interface Certificate {
  key: string
  cert: string
}

let certificate: Promise<Certificate> | undefined

/** A self-signed certificate for localhost and 127.0.0.1, made once per test process. */
export async function testCertificate (): Promise<Certificate> {
  certificate ??= generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }]
  }).then((pems) => ({ key: pems.private, cert: pems.cert }))
  return await certificate
}

export interface TestServer {
  app: FastifyInstance
  protocol: Protocol
  /** `http://127.0.0.1:port` or `https://127.0.0.1:port` (the certificate names both) */
  origin: string
  logs: LogRecorder
  /** The certificate a TLS client must trust. */
  ca: string | undefined
}

export interface ServerOptions {
  /** Options given to the plugin; `false` does not register it. */
  plugin?: FastifySseOptions | false
  /** Extra Fastify options (logger and transport are set here). */
  fastify?: FastifyServerOptions & Record<string, unknown>
  /** Log level recorded; default `debug`. */
  logLevel?: string
}

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** A Fastify app with the plugin, listening on a free port of 127.0.0.1, closed when the test ends. */
export async function startServer (t: Teardown, protocol: Protocol,
  routes: (app: FastifyInstance) => void | Promise<void>, options: ServerOptions = {}): Promise<TestServer> {
  const logs = new LogRecorder()
  const tls = isTls(protocol) ? await testCertificate() : undefined
  const fastifyOptions: Record<string, unknown> = {
    logger: { level: options.logLevel ?? 'debug', stream: logs },
    ...options.fastify
  }
  if (protocol !== 'http1') fastifyOptions.http2 = true
  if (tls !== undefined) fastifyOptions.https = { key: tls.key, cert: tls.cert, allowHTTP1: true }
  const app = Fastify(fastifyOptions) as unknown as FastifyInstance
  t.teardown(() => app.close())
  if (options.plugin !== false) await app.register(sse, options.plugin ?? {})
  await routes(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const origin = `${tls !== undefined ? 'https' : 'http'}://127.0.0.1:${port}`
  return { app, protocol, origin, logs, ca: tls?.cert }
}
