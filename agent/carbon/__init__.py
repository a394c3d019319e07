"""Carbon: from IT kWh to CO2e, hour by hour, as pure arithmetic over loaded data.

`model` (sites, PUE, location- and market-based intensity, CFE, embodied), `data` (annual
intensities from codecarbon's packaged files, read offline), `places` (location forms, cloud region
tables, place names and nearest codes), `datafiles` (codecarbon's files: paths, citations, one
cached reader), `series` (hourly intensity CSVs).

Imports: agent.config, agent.units. Nothing here knows about jobs, the ledger or Prometheus.
"""
