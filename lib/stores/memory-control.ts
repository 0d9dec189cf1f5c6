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
  // Sends waiting for answers: the members each still waits for, and what to call once it waits for none.
  private readonly waiting = new Map<Set<string>, () => void>()
  private joined = 0

  async join (handler: ControlHandler): Promise<ControlMember> {
    const id = `local-${++this.joined}`
    this.members.set(id, handler)
    return {
      id,
      send: async (message, timeoutMs) => await this.send(message, timeoutMs),
      leave: async () => this.leave(id)
    }
  }

  private async send (message: ControlMessage, timeoutMs: number): Promise<ControlResult> {
    const text = JSON.stringify(message)
    const answers = new Map<string, unknown>()
    const pending = new Set(this.members.keys())
    let done!: () => void
    const answered = new Promise<void>((resolve) => { done = resolve })
    const settle = (): void => { if (pending.size === 0) done() }
    this.waiting.set(pending, settle)
    for (const [id, handler] of this.members) {
      let answer: unknown
      try {
        answer = handler(JSON.parse(text) as ControlMessage)
      } catch {
        continue
      }
      Promise.resolve(answer).then((value) => {
        if (!pending.delete(id)) return
        answers.set(id, value === undefined ? undefined : JSON.parse(JSON.stringify(value)))
        settle()
      }, () => {})
    }
    const timer = setTimeout(done, timeoutMs)
    settle()
    await answered
    clearTimeout(timer)
    this.waiting.delete(pending)
    return { answers, unanswered: [...pending] }
  }

  private leave (id: string): void {
    this.members.delete(id)
    for (const [pending, settle] of this.waiting) {
      if (pending.delete(id)) settle()
    }
  }
}
