"""Agent health: scrapes, collectors, sampling time, unattributed share, the ledger."""

from common import (
    NODES,
    dashboard,
    errors,
    instance_variable,
    instant_table,
    query_variable,
    row,
    series,
    stat,
)

dashboard = dashboard(
    title="greenai / Agent health",
    uid="greenai-agent-health",
    description="Is every greenai agent scraped, are its collectors working, does it attribute the energy, "
    "and does its ledger write?",
    variables=[
        query_variable("job", "Scrape job", "label_values(greenai_build_info, job)"),
        instance_variable(),
    ],
    panels=[
        stat("Agents up", 'sum(up{job=~"$job",instance=~"$instance"})', "none", (0, 0, 6, 4)),
        stat(
            "Agents down",
            'count(up{job=~"$job",instance=~"$instance"} == 0) or vector(0)',
            "none",
            (6, 0, 6, 4),
            "Targets of the scrape job that Prometheus cannot scrape (alert GreenaiAgentDown).",
        ),
        stat(
            "Collectors down",
            f"count(greenai_collector_up{{{NODES}}} == 0) or vector(0)",
            "none",
            (12, 0, 6, 4),
        ),
        stat(
            "Ledger rows pending",
            f"sum(greenai_ledger_pending_rows{{{NODES}}})",
            "none",
            (18, 0, 6, 4),
            "Rows waiting in the agents' memory to be written to their ledgers.",
        ),
        row("Collectors", 4),
        series(
            "Collector up",
            f"min by (instance, collector) (greenai_collector_up{{{NODES}}})",
            "{{instance}} {{collector}}",
            "none",
            (0, 5, 8, 8),
            "1 while the collector's reads work; 0 when they fail or its probe found a problem.",
        ),
        errors(
            "Collector errors",
            "greenai_collector_errors_total",
            "instance, collector, reason",
            (8, 5, 8, 8),
            "Failed reads per second, by reason (gpu_lost, not_supported, no_permission, read_failed).",
        ),
        instant_table(
            "Collector status",
            f"max by (instance, collector, status) (greenai_collector_status{{{NODES}}})",
            (16, 5, 8, 8),
            "What each collector's probe found at start.",
        ),
        row("Sampling and attribution", 13),
        series(
            "Sample duration",
            f"max by (instance) (greenai_agent_sample_duration_seconds{{{NODES}}})",
            "{{instance}}",
            "s",
            (0, 14, 8, 8),
        ),
        series(
            "Unattributed share",
            f"instance:greenai_node_unattributed_energy:ratio_rate5m{{{NODES}}}",
            "{{instance}}",
            "percentunit",
            (8, 14, 8, 8),
            "Share of the IT energy charged to no job (recording rule). All of it on an idle node; alert "
            "GreenaiUnattributedEnergyHigh fires above 50% for 1h while jobs run.",
        ),
        errors(
            "Accounting errors",
            "greenai_accounting_errors_total",
            "instance, stage",
            (16, 14, 8, 8),
            "Failures to find jobs or GPU processes; that interval's energy stays unattributed.",
        ),
        row("Ledger", 22),
        series(
            "Ledger last write succeeded",
            f"min by (instance) (greenai_ledger_last_flush_success{{{NODES}}})",
            "{{instance}}",
            "none",
            (0, 23, 8, 8),
        ),
        errors("Ledger errors", "greenai_ledger_errors_total", "instance, reason", (8, 23, 8, 8)),
        series(
            "Ledger rows pending",
            f"max by (instance) (greenai_ledger_pending_rows{{{NODES}}})",
            "{{instance}}",
            "none",
            (16, 23, 8, 8),
        ),
        instant_table(
            "Agent versions", f"max by (instance, version) (greenai_build_info{{{NODES}}})", (0, 31, 24, 6)
        ),
    ],
)
