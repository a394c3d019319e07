"""Jobs: top jobs by energy and CO2e, GPU vs CPU split, and one job's drill-down (`job_id`)."""

from common import (
    DS,
    JOULES_PER_KWH,
    NODES,
    bars,
    basis_variable,
    dashboard,
    instance_variable,
    q,
    row,
    stat,
    table,
    timeseries,
)
from grafanalib.core import Template

JOB_ENERGY = f"greenai_job_energy_joules_total{{{NODES}}}"
JOB_CO2 = f'greenai_job_co2_grams_total{{{NODES},basis="$basis"}}'
ONE_JOB_ENERGY = 'greenai_job_energy_joules_total{job_id="$job_id"}'
ONE_JOB_CO2 = 'greenai_job_co2_grams_total{job_id="$job_id"}'

job_id = Template(
    name="job_id",
    label="Job",
    query=f"label_values({JOB_ENERGY}, job_id)",
    dataSource=DS,
    refresh=2,
    sort=1,
)

dashboard = dashboard(
    title="greenai / Jobs",
    uid="greenai-jobs",
    description="Energy and CO2e the greenai agents attribute to jobs (Slurm, Kubernetes, systemd, "
    "containers). A job's counters start when an agent first sees it; a job that spans nodes has one "
    "series per node.",
    variables=[instance_variable(), basis_variable(), job_id],
    panels=[
        stat("Jobs running", f"sum(greenai_jobs_running{{{NODES}}})", "none", (0, 0, 6, 4)),
        stat(
            "Job power",
            f"sum(rate({JOB_ENERGY}[$__rate_interval]))",
            "watt",
            (6, 0, 6, 4),
            "Power attributed to jobs now, all components.",
        ),
        stat(
            "Job energy in range",
            f"sum(increase({JOB_ENERGY}[$__range])) / {JOULES_PER_KWH:g}",
            "kwatth",
            (12, 0, 6, 4),
        ),
        stat("Job CO2e in range", f"sum(increase({JOB_CO2}[$__range]))", "massg", (18, 0, 6, 4)),
        row("Top jobs", 4),
        bars(
            "Top 10 jobs by energy in range",
            f"topk(10, sum by (job_id, scheduler) (increase({JOB_ENERGY}[$__range]))) / {JOULES_PER_KWH:g}",
            "{{job_id}} ({{scheduler}})",
            "kwatth",
            (0, 5, 12, 10),
        ),
        bars(
            "Top 10 jobs by CO2e in range",
            f"topk(10, sum by (job_id, scheduler) (increase({JOB_CO2}[$__range])))",
            "{{job_id}} ({{scheduler}})",
            "massg",
            (12, 5, 12, 10),
        ),
        timeseries(
            "Power of the 10 most powerful jobs",
            [q(f"topk(10, sum by (job_id) (rate({JOB_ENERGY}[$__rate_interval])))", "{{job_id}}")],
            "watt",
            (0, 15, 16, 9),
        ),
        timeseries(
            "GPU vs CPU (jobs)",
            [q(f"sum by (component) (rate({JOB_ENERGY}[$__rate_interval]))", "{{component}}")],
            "watt",
            (16, 15, 8, 9),
            "Job power by component: gpu, cpu and dram.",
            stacked=True,
        ),
        row("Job $job_id", 24),
        stat(
            "Energy of $job_id",
            f"sum(max_over_time({ONE_JOB_ENERGY}[$__range])) / {JOULES_PER_KWH:g}",
            "kwatth",
            (0, 25, 6, 4),
            "The job's counters at their highest in the range, summed over its nodes and components.",
        ),
        stat(
            "CO2e of $job_id",
            'sum(max_over_time(greenai_job_co2_grams_total{job_id="$job_id",basis="$basis"}[$__range]))',
            "massg",
            (6, 25, 6, 4),
        ),
        table(
            "$job_id by node",
            [q(f"sum by (instance, component) (rate({ONE_JOB_ENERGY}[$__rate_interval]))", instant=True)],
            (12, 25, 12, 4),
            "The job's power now on each node, by component (W).",
        ),
        timeseries(
            "Power of $job_id by component",
            [q(f"sum by (component) (rate({ONE_JOB_ENERGY}[$__rate_interval]))", "{{component}}")],
            "watt",
            (0, 29, 12, 9),
            stacked=True,
        ),
        timeseries(
            "CO2e rate of $job_id",
            [q(f"sum by (basis) (rate({ONE_JOB_CO2}[$__rate_interval])) * 3600", "{{basis}}")],
            "massg",
            (12, 29, 12, 9),
            "Grams of CO2e per hour, location- and market-based.",
        ),
    ],
)
