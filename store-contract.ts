// fastify-sse-h2/store-contract: the checks a store of your own must pass, for any test runner.
export { storeContract } from './lib/stores/store-contract'
export type { StoreContractCheck, StoreContractSubject } from './lib/stores/store-contract'
