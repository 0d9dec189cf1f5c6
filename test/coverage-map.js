'use strict'

// tap's coverage map (.taprc): the files each test file's coverage is counted for. With every service installed, and
// always under CI=true: tap's own choice, everything the tests load, held to 100%. On a machine without one, whose
// suites are skipped (test/helpers/services.ts), the files only those suites reach are left out of the count, and
// said so, rather than failing it. Plain JavaScript: tap loads it itself, without the TypeScript loader.
const { execFileSync } = require('node:child_process')
const { readdirSync } = require('node:fs')
const { join } = require('node:path')

/** The service, and the files that only the suites needing it reach. */
const REACHED_ONLY_WITH = {
  // Every file of the Redis store, as many as it has.
  'redis-server': readdirSync(join(__dirname, '..', 'lib', 'stores', 'redis')).filter((name) => name.endsWith('.ts'))
    .map((name) => `lib/stores/redis/${name}`),
  // The Redis Cluster suite (test/redis-cluster.test.ts) makes its cluster with it: the store's Cluster branches.
  'redis-cli': ['lib/stores/redis/store.ts', 'lib/stores/redis/connections.ts', 'lib/stores/redis/live-feed.ts',
    'lib/stores/redis/live-connection.ts']
}

function installed (binary) {
  try {
    return execFileSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' }).trim() !== ''
  } catch {
    return false
  }
}

function coveredFiles () {
  if (process.env.CI === 'true') return []
  const left = Object.entries(REACHED_ONLY_WITH).filter(([binary]) => !installed(binary))
  if (left.length === 0) return []
  const leftOut = new Set(left.flatMap(([, files]) => files))
  for (const [binary, files] of left) {
    process.stderr.write(`coverage: ${files.join(', ')} left out of the 100% check, as ${binary} is not installed ` +
      '(its suites are skipped; CI=true checks everything)\n')
  }
  const lib = readdirSync(join(__dirname, '..', 'lib'), { recursive: true })
    .filter((name) => name.endsWith('.ts')).map((name) => `lib/${name.split('\\').join('/')}`)
  return ['index.ts', 'redis.ts', ...lib].filter((file) => !leftOut.has(file))
}

const covered = coveredFiles()

module.exports = function coverageMap () {
  return covered
}
