"""What the tests stand on, in one place.

Fakes at the OS and driver boundary: a generated powercap tree (`powercap`), procfs (`procfs`) and
cgroup trees, plus real cgroups under a unique prefix (`cgroups`), a clock that moves only when told
(`clock`), and a fake libnvidia-ml.so.1 written in C (`fake_nvml.c`, built and fed by `nvml`; `drive`
runs a collector on it in a subprocess).

Real processes the tests run: the agent and a Prometheus server (`processes`), a single-node Slurm
(`slurm_cluster`), CodeCarbon's own tracker (`codecarbon_run`), and code run without root's right to
read any file (`privileges`). `rules_test.yml` is promtool's test data for dashboards/greenai.rules.yml.
"""
