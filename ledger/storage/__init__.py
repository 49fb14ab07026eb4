"""Storage: one key-value interface with a LevelDB and an in-memory backend, and the chain
store on top that writes a block and everything it changes in one synchronous batch."""
