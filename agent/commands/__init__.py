"""The CLI's commands other than `agent`: each turns arguments into output and an exit code.

`jobs` (`greenai jobs` and `job`), `card`, `report`, `doctor`, `import_runs`, `annotate`,
`dashboards`; `failures` is the one table of expected errors, their exit codes and the one-line
`greenai: ...` message; `text` makes job-supplied text safe on a terminal.

Imports any layer below: agent.report, agent.export, agent.live, agent.ledger, agent.carbon,
agent.config, collectors. Only agent.cli imports this.
"""
