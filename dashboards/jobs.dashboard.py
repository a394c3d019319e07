"""Jobs: top jobs by energy and CO2e, GPU vs CPU split, and one job's drill-down (`job_id`)."""

from common import (
    NODES,
    bars,
    basis_variable,
    dashboard,
    increase,
    instance_variable,
    instant_table,
    kwh,
    power_by,
    query_variable,
    rate,
    row,
    series,
    stat,
)

JOB_ENERGY = f"greenai_job_energy_joules_total{{{NODES}}}"
JOB_CO2 = f'greenai_job_co2_grams_total{{{NODES},basis="$basis"}}'
ONE_JOB_ENERGY = 'greenai_job_energy_joules_total{job_id="$job_id"}'
ONE_JOB_CO2 = 'greenai_job_co2_grams_total{job_id="$job_id"}'

dashboard = dashboard(
    title="greenai / Jobs",
    uid="greenai-jobs",
    description="Energy and CO2e the greenai agents attribute to jobs (Slurm, Kubernetes, systemd, "
    "containers). A job's counters start when an agent first sees it; a job that spans nodes has one "
    "series per node.",
    variables=[
        instance_variable(),
        basis_variable(),
        query_variable("job_id", "Job", f"label_values({JOB_ENERGY}, job_id)", multi=False),
    ],
    panels=[
        stat("Jobs running", f"sum(greenai_jobs_running{{{NODES}}})", "none", (0, 0, 6, 4)),
        stat(
            "Job power",
            rate(JOB_ENERGY),
            "watt",
            (6, 0, 6, 4),
            "Power attributed to jobs now, all components.",
        ),
        stat("Job energy in range", kwh(increase(JOB_ENERGY)), "kwatth", (12, 0, 6, 4)),
        stat("Job CO2e in range", increase(JOB_CO2), "massg", (18, 0, 6, 4)),
        row("Top jobs", 4),
        bars(
            "Top 10 jobs by energy in range",
            kwh(f"topk(10, {increase(JOB_ENERGY, by='job_id, scheduler')})"),
            "{{job_id}} ({{scheduler}})",
            "kwatth",
            (0, 5, 12, 10),
        ),
        bars(
            "Top 10 jobs by CO2e in range",
            f"topk(10, {increase(JOB_CO2, by='job_id, scheduler')})",
            "{{job_id}} ({{scheduler}})",
            "massg",
            (12, 5, 12, 10),
        ),
        series(
            "Power of the 10 most powerful jobs",
            f"topk(10, {rate(JOB_ENERGY, 'job_id')})",
            "{{job_id}}",
            "watt",
            (0, 15, 16, 9),
        ),
        power_by(
            "GPU vs CPU (jobs)",
            JOB_ENERGY,
            "component",
            (16, 15, 8, 9),
            "Job power by component: gpu, cpu and dram.",
            stacked=True,
        ),
        row("Job $job_id", 24),
        stat(
            "Energy of $job_id",
            kwh(f"sum(max_over_time({ONE_JOB_ENERGY}[$__range]))"),
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
        instant_table(
            "$job_id by node",
            rate(ONE_JOB_ENERGY, "instance, component"),
            (12, 25, 12, 4),
            "The job's power now on each node, by component (W).",
        ),
        power_by("Power of $job_id by component", ONE_JOB_ENERGY, "component", (0, 29, 12, 9), stacked=True),
        series(
            "CO2e rate of $job_id",
            f"{rate(ONE_JOB_CO2, 'basis')} * 3600",
            "{{basis}}",
            "massg",
            (12, 29, 12, 9),
            "Grams of CO2e per hour, location- and market-based.",
        ),
    ],
)
