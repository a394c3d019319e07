"""Shared pieces of the greenai dashboards: the datasource input, variables and panel builders.

Every panel and every query reads from `${DS_PROMETHEUS}`, a datasource input that Grafana asks for
on import, so the generated JSON imports into any Grafana. Panels are placed on a 24-column grid.
"""

from __future__ import annotations

from grafanalib.core import (
    BarGauge,
    Dashboard,
    DataSourceInput,
    GridPos,
    RowPanel,
    Stat,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

from agent.units import JOULES_PER_KWH

DS = "${DS_PROMETHEUS}"
INPUTS = [
    DataSourceInput(
        name="DS_PROMETHEUS",
        label="Prometheus",
        pluginId="prometheus",
        pluginName="Prometheus",
        description="The Prometheus that scrapes the greenai agents (and holds dashboards/greenai.rules.yml)",
    )
]
NODES = 'instance=~"$instance"'
"""The matcher that narrows a query to the nodes picked in the `instance` variable."""
Pos = tuple[int, int, int, int]
"""A panel's place on the 24-column grid: (x, y, w, h)."""


def grid(pos: Pos) -> GridPos:
    """A panel's place as grafanalib takes it (GridPos takes h, w, x, y)."""
    x, y, w, h = pos
    return GridPos(h=h, w=w, x=x, y=y)


def _summed(expr: str, by: str) -> str:
    """expr summed over all its series, or per value of the labels in `by`."""
    return f"sum by ({by}) ({expr})" if by else f"sum({expr})"


def rate(counter: str, by: str = "") -> str:
    """A counter's per-second rate, summed over its series (per value of the labels in `by`)."""
    return _summed(f"rate({counter}[$__rate_interval])", by)


def increase(counter: str, window: str = "$__range", by: str = "") -> str:
    """How much a counter grew in the window, summed over its series (per value of the labels in `by`)."""
    return _summed(f"increase({counter}[{window}])", by)


def kwh(joules: str) -> str:
    """A query in joules, in kWh."""
    return f"{joules} / {JOULES_PER_KWH:g}"


def q(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Target:
    """One PromQL query of a panel."""
    return Target(
        expr=expr,
        legendFormat=legend,
        refId=ref,
        datasource=DS,
        instant=instant,
        format="table" if instant else "time_series",
    )


def queries(*pairs: tuple[str, str], instant: bool = False) -> list[Target]:
    """Several (expr, legend) queries, lettered A, B, C..."""
    return [q(expr, legend, chr(ord("A") + i), instant) for i, (expr, legend) in enumerate(pairs)]


def timeseries(
    title: str,
    targets: list[Target],
    unit: str,
    pos: Pos,
    description: str = "",
    stacked: bool = False,
    bars: bool = False,
    interval: str = "",
) -> TimeSeries:
    """A time series panel at pos = (x, y, w, h)."""
    return TimeSeries(
        title=title,
        description=description,
        dataSource=DS,
        targets=targets,
        unit=unit,
        gridPos=grid(pos),
        stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none"},
        fillOpacity=60 if bars else (25 if stacked else 0),
        drawStyle="bars" if bars else "line",
        interval=interval or None,
        legendDisplayMode="table",
        legendPlacement="right" if pos[2] >= 16 else "bottom",
        legendCalcs=["mean", "max", "lastNotNull"],
    )


def series(
    title: str, expr: str, legend: str, unit: str, pos: Pos, description: str = "", stacked: bool = False
) -> TimeSeries:
    """A time series panel of one query."""
    return timeseries(title, [q(expr, legend)], unit, pos, description, stacked)


def per_day(title: str, expr: str, legend: str, unit: str, pos: Pos, stacked: bool = False) -> TimeSeries:
    """Bars of one query, one a day: the query's range is `$__interval`."""
    return timeseries(title, [q(expr, legend)], unit, pos, stacked=stacked, bars=True, interval="1d")


def _legend(by: str) -> str:
    """The legend that names a series by its values of the labels in `by`."""
    return " ".join("{{" + label.strip() + "}}" for label in by.split(","))


def power_by(
    title: str, joules: str, by: str, pos: Pos, description: str = "", stacked: bool = False
) -> TimeSeries:
    """Power from an energy counter, a series per value of the labels in `by`."""
    return series(title, rate(joules, by), _legend(by), "watt", pos, description, stacked)


def errors(title: str, counter: str, by: str, pos: Pos, description: str = "") -> TimeSeries:
    """Errors per second of a counter on the picked nodes, a series per value of the labels in `by`."""
    return series(title, rate(f"{counter}{{{NODES}}}", by), _legend(by), "reqps", pos, description)


def stat(title: str, expr: str, unit: str, pos: Pos, description: str = "") -> Stat:
    """A single-figure panel of one query."""
    return Stat(
        title=title,
        description=description,
        dataSource=DS,
        targets=[q(expr)],
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="none",
        thresholds=[{"color": "green", "value": None}],
        gridPos=grid(pos),
    )


def bars(title: str, expr: str, legend: str, unit: str, pos: Pos, description: str = "") -> BarGauge:
    """A ranking (top N) as horizontal bars, of an instant query."""
    return BarGauge(
        title=title,
        description=description,
        dataSource=DS,
        targets=[q(expr, legend, instant=True)],
        format=unit,
        calc="lastNotNull",
        allValues=True,
        orientation="horizontal",
        displayMode="gradient",
        min=0,
        max=None,
        gridPos=grid(pos),
    )


def table(title: str, targets: list[Target], pos: Pos, description: str = "") -> Table:
    """A table of instant queries, merged on their labels."""
    return Table(
        title=title,
        description=description,
        dataSource=DS,
        targets=targets,
        gridPos=grid(pos),
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ],
    )


def instant_table(title: str, expr: str, pos: Pos, description: str = "") -> Table:
    """A table of one instant query: a row per series, its labels as columns."""
    return table(title, [q(expr, instant=True)], pos, description)


def row(title: str, y: int) -> RowPanel:
    """A section heading across the dashboard at height y."""
    return RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y))


def query_variable(name: str, label: str, query: str, multi: bool = True) -> Template:
    """A variable whose values a query lists; multi: pick several of them, or All."""
    return Template(
        name=name,
        label=label,
        query=query,
        dataSource=DS,
        includeAll=multi,
        multi=multi,
        allValue=".*" if multi else None,
        refresh=2,
        sort=1,
    )


def instance_variable() -> Template:
    """The `instance` variable: the nodes (Prometheus targets) whose agents to show."""
    return query_variable("instance", "Node", "label_values(greenai_build_info, instance)")


def basis_variable() -> Template:
    """The `basis` variable: location- or market-based CO2e."""
    return Template(
        name="basis",
        label="CO2e basis",
        query="location,market",
        type="custom",
        default="location",
        includeAll=False,
    )


def dashboard(title: str, uid: str, description: str, panels: list, variables: list[Template]) -> Dashboard:
    """A greenai dashboard: the datasource input, the variables, the last 24 hours, ids assigned."""
    return Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["greenai", "energy"],
        inputs=INPUTS,
        templating=Templating(list=variables),
        time=Time("now-24h", "now"),
        refresh="1m",
        timezone="browser",
        panels=panels,
    ).auto_panel_ids()
