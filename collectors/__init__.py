"""Where energy and jobs come from: hardware and OS counters, read behind small interfaces.

Two levels, imports pointing down only (the import-linter contract in pyproject.toml):

- level 1, standard library only: `base` (the Collector interface, components, the wrap-safe
  delta), `workloads` (what job discovery reports), `smallfiles`, `procstat`;
- level 2, level 1 only: the power sources `rapl`, `nvml/`, `estimate` (with `tdp`), and job
  discovery in `jobs/`. Power sources and job discovery never import each other.

Nothing here knows about the agent: no config, ledger, Prometheus or carbon.
"""
