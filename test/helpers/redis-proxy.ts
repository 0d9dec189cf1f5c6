import { createServer, connect, type Server, type Socket } from 'node:net'
import { once } from 'node:events'

interface Pair {
  client: Socket
  upstream: Socket
  frozen: boolean
}

/**
 * A TCP proxy in front of a real Redis, for a connection that dies without a word: freeze() makes one connection a
 * black hole (what either side sends is dropped, nothing is closed), as a cut cable or a dead NAT entry would. New
 * connections pass.
 */
export class RedisProxy {
  port = 0
  private readonly server: Server
  private readonly pairs = new Set<Pair>()

  private constructor (redisPort: number) {
    this.server = createServer((client) => {
      const upstream = connect(redisPort, '127.0.0.1')
      const pair = { client, upstream, frozen: false }
      this.pairs.add(pair)
      client.on('data', (chunk) => { if (!pair.frozen) upstream.write(chunk) })
      upstream.on('data', (chunk) => { if (!pair.frozen) client.write(chunk) })
      const end = (): void => {
        this.pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      for (const socket of [client, upstream]) {
        socket.on('close', end)
        socket.on('error', end)
      }
    })
  }

  static async start (t: { teardown: (fn: () => unknown) => void }, redisPort: number): Promise<RedisProxy> {
    const proxy = new RedisProxy(redisPort)
    proxy.server.listen(0, '127.0.0.1')
    await once(proxy.server, 'listening')
    proxy.port = (proxy.server.address() as { port: number }).port
    t.teardown(() => proxy.close())
    return proxy
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Freezes the connection Redis knows by `address` (CLIENT LIST's addr: the proxy's side of it). */
  freeze (address: string): boolean {
    for (const pair of this.pairs) {
      if (`127.0.0.1:${pair.upstream.localPort as number}` === address) {
        pair.frozen = true
        return true
      }
    }
    return false
  }

  close (): void {
    for (const pair of this.pairs) {
      pair.client.destroy()
      pair.upstream.destroy()
    }
    this.server.close()
  }
}
