"""The live path, once per sampling interval: read the collectors, attribute, price, publish.

`sources` (a table of collector factories; probe each once), `sampler` (wrap-safe deltas, node
totals), `attribution` (the pure split of an interval's energy among jobs), `accounting` (per-job
totals over time; hands each interval to a ledger sink), `work` (each job's project, phase, model),
`carbon` (live CO2e), `snapshot` (the immutable values one sample publishes).

Imports: agent.carbon, agent.config, agent.units, collectors. Never agent.ledger: the accountant
writes through its `LedgerSink` protocol, which the daemon fills with the ledger's writer.
"""
