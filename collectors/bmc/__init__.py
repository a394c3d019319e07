"""The node's wall power from its BMC over Redfish: an HTTPS client that turns every failure into one
reason (`client`), the rule that picks the node's chassis and its power resource (`discovery`), the
counter integrated from polled power or followed from a BMC energy meter (`track`), and the
collector that polls in its own thread and never lets sampling wait (`collector`). docs/bmc.md.

Imports collectors level 1 and its own modules only.
"""

from collectors.bmc.collector import BmcCollector

__all__ = ["BmcCollector"]
