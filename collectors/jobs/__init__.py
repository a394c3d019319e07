"""Job discovery: which jobs run on the node and what each uses, from cgroups (v1, v2, hybrid) and
/proc, with names from Slurm (`slurm`) and Kubernetes (`kubernetes`).

`cgroups.JobDiscovery` is the entry point; `walk` finds the job cgroups in the hierarchies, `paths`
tells what a cgroup path is, `procjobs` finds Slurm jobs by their environment where no job cgroup
exists. Imports collectors level 1 only, never
a power source.
"""
