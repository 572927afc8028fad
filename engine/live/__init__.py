"""The running engine, one job per module: the replication book, the leader and follower
feeds, the executor and its broker actions, resolution of unclear answers, recovery,
supervision, persistence (write-behind), funds and stats. `engine.engine.Engine` wires them."""
