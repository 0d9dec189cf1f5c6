import { createServer, connect, type Server, type Socket } from 'node:net'
import { EventEmitter } from 'node:events'
import type { AddressInfo } from 'node:net'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

interface Pipe {
  client: Socket
  upstream: Socket
  /** True once frozen: bytes are taken from both ends and dropped, and the connection stays open. */
  frozen: boolean
  /** Pieces forwarded from the server to the client. */
  toClient: number
}

/**
 * A TCP proxy on 127.0.0.1, as a load balancer or a network between a client and the server: each connection goes to
 * the port `target` names when it arrives (a test moves it to another instance), and `freeze()` makes the open ones
 * half-open, as a proxy or a network that keeps a connection and forwards nothing. It emits `connection` for each, and
 * `toClient` for each piece it forwards to a client.
 */
export class TcpProxy extends EventEmitter {
  target: number
  readonly pipes: Pipe[] = []
  private readonly server: Server

  private constructor (target: number) {
    super()
    this.target = target
    this.server = createServer((client) => this.pipe(client))
  }

  static async start (t: Teardown, target: number): Promise<TcpProxy> {
    const proxy = new TcpProxy(target)
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => proxy.close())
    return proxy
  }

  get port (): number {
    return (this.server.address() as AddressInfo).port
  }

  /** Every connection open now stops forwarding, in both directions, and stays open; new ones forward as usual. */
  freeze (): void {
    for (const pipe of this.pipes) pipe.frozen = true
  }

  close (): void {
    for (const { client, upstream } of this.pipes) {
      client.destroy()
      upstream.destroy()
    }
    this.server.close()
  }

  private pipe (client: Socket): void {
    const upstream = connect(this.target, '127.0.0.1')
    const pipe: Pipe = { client, upstream, frozen: false, toClient: 0 }
    this.pipes.push(pipe)
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (chunk) => {
        if (pipe.frozen) return
        to.write(chunk)
        if (to !== client) return
        pipe.toClient++
        this.emit('toClient', pipe)
      })
      from.on('end', () => { if (!pipe.frozen) to.end() })
      from.on('error', () => to.destroy())
      from.on('close', () => { if (!pipe.frozen) to.destroy() })
    }
    forward(client, upstream)
    forward(upstream, client)
    this.emit('connection', pipe)
  }
}
