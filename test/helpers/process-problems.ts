interface Teardown {
  teardown: (fn: () => unknown) => void
}

/** Unhandled rejections and uncaught exceptions while the test runs. */
export function watchProcess (t: Teardown): unknown[] {
  const problems: unknown[] = []
  const record = (error: unknown): void => { problems.push(error) }
  process.on('unhandledRejection', record)
  process.on('uncaughtException', record)
  t.teardown(() => {
    process.removeListener('unhandledRejection', record)
    process.removeListener('uncaughtException', record)
  })
  return problems
}
