import type { ControlHandler, ControlMember, ControlMessage, ControlResult, SseStoreControl } from './store'

/**
 * The members of one process that share a store (each registration of the plugin given the same store object), and
 * the messages between them: handed to each member's handler at once, in the order they are sent, each member given
 * its own copy (as a store between processes would, through JSON), its answer awaited within the bound.
 */
export class MemoryControl implements SseStoreControl {
  // A member of this process never dies without a word: it leaves.
  readonly leaseMs = 0
  private readonly members = new Map<string, ControlHandler>()
  private joined = 0
  private readonly reporters = new Set<() => ReadonlyMap<string, number>>()

  async join (handler: ControlHandler): Promise<ControlMember> {
    const id = `local-${++this.joined}`
    this.members.set(id, handler)
    return {
      id,
      send: async (message, timeoutMs) => await this.send(message, timeoutMs),
      leave: async () => { this.members.delete(id) }
    }
  }

  report (read: () => ReadonlyMap<string, number>): () => void {
    this.reporters.add(read)
    return () => { this.reporters.delete(read) }
  }

  async sum (name: string): Promise<number> {
    let sum = 0
    for (const read of this.reporters) sum += read().get(name) ?? 0
    return sum
  }

  private async send (message: ControlMessage, timeoutMs: number): Promise<ControlResult> {
    const text = JSON.stringify(message)
    const answers = new Map<string, unknown>()
    const pending = new Set(this.members.keys())
    let done!: () => void
    const answered = new Promise<void>((resolve) => { done = resolve })
    let finished = false
    const settle = (): void => { if (pending.size === 0) done() }
    for (const [id, handler] of this.members) {
      // In order: each member's handler is called in this tick, a message after the one sent before it.
      new Promise((resolve) => { resolve(handler(JSON.parse(text) as ControlMessage)) }).then((value) => {
        // An answer later than the bound changes nothing.
        if (finished || !pending.delete(id)) return
        answers.set(id, JSON.parse(JSON.stringify(value ?? null)))
        settle()
      }, () => {})
    }
    const timer = setTimeout(done, timeoutMs)
    settle()
    await answered
    finished = true
    clearTimeout(timer)
    return { answers, unanswered: [...pending] }
  }
}
