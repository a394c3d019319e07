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
JOULES_PER_KWH = 3.6e6


def grid(pos: tuple[int, int, int, int]) -> GridPos:
    """A panel's place, pos = (x, y, w, h) (GridPos itself takes h, w, x, y)."""
    x, y, w, h = pos
    return GridPos(h=h, w=w, x=x, y=y)


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
    pos: tuple[int, int, int, int],
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


def stat(title: str, expr: str, unit: str, pos: tuple[int, int, int, int], description: str = "") -> Stat:
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


def bars(
    title: str, expr: str, legend: str, unit: str, pos: tuple[int, int, int, int], description: str = ""
) -> BarGauge:
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


def table(title: str, targets: list[Target], pos: tuple[int, int, int, int], description: str = "") -> Table:
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


def row(title: str, y: int) -> RowPanel:
    """A section heading across the dashboard at height y."""
    return RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y))


def instance_variable() -> Template:
    """The `instance` variable: the nodes (Prometheus targets) whose agents to show."""
    return Template(
        name="instance",
        label="Node",
        query="label_values(greenai_build_info, instance)",
        dataSource=DS,
        includeAll=True,
        multi=True,
        allValue=".*",
        refresh=2,
        sort=1,
    )


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
