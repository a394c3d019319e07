"""The annual AI Energy Impact Report, from ledgers or from Prometheus.

`data` (a year of ledgers aggregated and priced), `prometheus` (the same from a Prometheus server),
`figures` (report.json) with `quality` (its method and data quality: energy sources, accuracy,
coverage), `targets` (training tasks per phase, the policy targets), `numbers` (table units over
agent.units), `sections` and `trends` (the report's sections as blocks; `cells` formats their table
cells), `charts` (PNG), `render` (Markdown and HTML) with `page` (its title, front block and CSS),
`pdf` (the HTML on A4 pages), and `annual` (make the document and write its files).

Imports: agent.ledger, agent.carbon, agent.config, agent.units, collectors level 1. Never
agent.export or agent.live, and export never imports this.
"""
