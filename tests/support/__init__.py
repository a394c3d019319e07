"""What the tests stand on, in one place.

Fakes at the OS and driver boundary: a generated powercap tree (`powercap`), procfs (`procfs`) and
cgroup trees, plus real cgroups under a unique prefix (`cgroups`), a clock that moves only when told
(`clock`), fake libnvidia-ml.so.1 and libamd_smi.so libraries written in C (`fake_nvml.c`,
`fake_amd_smi.c`, sharing `fake_state.h`; built by `fakelib` and fed by `nvml` and `amdsmi`; `drive`
and `drive_amd` run a collector on each in a subprocess), a hwmon tree with DRM clients in procfs
(`hwmon`; `trees` opens generated trees up to other users), and a Redfish BMC over local HTTPS
(`redfish`).

Real processes the tests run: the agent and a Prometheus server (`processes`), a single-node Slurm
(`slurm_cluster`), CodeCarbon's own tracker (`codecarbon_run`), and code run without root's right to
read any file (`privileges`). `rules_test.yml` is promtool's test data for dashboards/greenai.rules.yml.
"""
