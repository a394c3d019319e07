"""The annual AI Energy Impact Report, from ledgers or from Prometheus.

`data` (a year of ledgers aggregated and priced), `prometheus` (the same from a Prometheus server),
`figures` (report.json), `targets`, `charts` (PNG), `render` (Markdown and HTML), and `annual`
(make the document and write its files).

Imports: agent.ledger, agent.carbon, agent.config, agent.units, collectors level 1. Never
agent.export or agent.live, and export never imports this.
"""
