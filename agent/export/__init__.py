"""What the running agent shows: Prometheus metric families over the published sample, the JSON API,
and the HTTP server that serves both.

`node_metrics`, `job_metrics`, `co2_metrics` (families, each reading its part of one published
sample), `registry` (what a scrape renders), `api` (/api/v1/jobs), `server` (the handler, basic
auth) on `connections` (one reader thread, a bounded pool of workers, the limits).

Imports: agent.live (its snapshot types), agent.ledger (the API reads it), agent.carbon,
agent.config, collectors. Never agent.report, and report never imports this.
"""
