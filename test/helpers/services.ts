import { execFileSync } from 'node:child_process'

/**
 * Whether a service binary is installed. A suite that needs a missing service is skipped with a clear reason
 * on a developer's machine, and fails under CI=true (where .ci/run installs it), never skips silently.
 */
export function missingService (binary: string, install: string): string | undefined {
  try {
    execFileSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' })
    return undefined
  } catch {
    return `${binary} is not installed (${install}); .ci/run installs it`
  }
}

export function mustSkip (missing: string | undefined): string | false {
  if (missing === undefined) return false
  if (process.env.CI === 'true') throw new Error(`CI=true and ${missing}`)
  return missing
}
