"""Configuration: the YAML file and command-line flags, checked into frozen dataclasses.

`settings` (the file's schema and `load`), `carbon` (the `carbon:` section), `work` (the
`work.rules` section), all checked by `checks`, the one checker module: one location type (`At`),
one error (`ConfigError`, one line naming the file and key).

Imports: agent.units and collectors level 1 (the job types rules match on). Never runtime code:
nothing here reads /proc, a ledger or hardware.
"""
