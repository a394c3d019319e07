"""Where energy and jobs come from: hardware and OS counters, read behind small interfaces.

Three levels, imports pointing down only (the import-linter contract in pyproject.toml):

- level 1, standard library only: `base` (the Collector interface, components, the wrap-safe
  delta, the power integral, the vendor call), `workloads` (what job discovery reports),
  `smallfiles`, `procstat`;
- level 2, on level 1: `tdp` (CPU power tables), `drm` (processes on DRM GPUs, from fdinfo), `gpu`
  (the read loop and failure handling NVML and AMD SMI share);
- level 3, on levels 1 and 2: the power sources `rapl`, `nvml/`, `amdsmi/`, `hwmon`, `bmc/`,
  `estimate`, and job discovery in `jobs/`. Power sources and job discovery never import each other.

Nothing here knows about the agent: no config, ledger, Prometheus or carbon.
"""
