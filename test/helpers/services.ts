import { execFileSync } from 'node:child_process'

/** Where the shell finds `binary` (`command -v`), or undefined when it is not installed. */
export function binaryPath (binary: string): string | undefined {
  try {
    const path = execFileSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' }).trim()
    return path === '' ? undefined : path
  } catch {
    return undefined
  }
}

// How to install each service the suites need, said in the line of a suite skipped without it.
const INSTALL: Record<string, string> = {
  'redis-server': 'apt-get install redis-server (macOS: brew install redis)',
  chromium: 'apt-get install chromium',
  nginx: 'apt-get install nginx'
}

/**
 * Whether a service binary is installed. A suite that needs a missing service is skipped with a clear reason
 * on a developer's machine, and fails under CI=true (where .ci/run installs it), never skips silently.
 */
export function missingService (binary: string, install = INSTALL[binary] ?? `install ${binary}`): string | undefined {
  if (binaryPath(binary) !== undefined) return undefined
  return `${binary} is not installed: ${install} to run these tests`
}

export function mustSkip (missing: string | undefined): string | false {
  if (missing === undefined) return false
  if (process.env.CI === 'true') throw new Error(`CI=true runs every suite, but ${missing} (.ci/run installs it)`)
  return `${missing} (under CI=true, this fails)`
}
