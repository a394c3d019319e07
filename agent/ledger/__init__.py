"""The ledger: durable joules per job x UTC hour x component x source, one SQLite file per node.

`writer` (the agent's: sums in memory, flushed by its own thread), `job_rows` (the job records a
flush writes), `read` (the queries, the hourly balance, a read-only reader), `summary` (a job's
record and how a user names one), `aggregates` (what reports stream), `provenance` (each figure's
kind: measured, estimated, imported; accuracy and ranges), `schema` (format, migrations, errors),
`files` (opening for writing), `pending`, `annotate`, `imports` (storing imported runs),
`import_files` (what parsing them shares: records, errors, reading rows and cells), `import_csv` and
`import_codecarbon` (the two formats), `job_carbon` (a job's CO2e, priced hour by hour).

Imports: agent.carbon, agent.config, agent.units, collectors level 1 and job paths. The live
path writes here only through its sink protocol (agent.live.accounting.LedgerSink).
"""
