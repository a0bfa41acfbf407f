"""The xDS server's families: open ADS streams, and responses, ACKs and NACKs by resource type."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from controlplane.xds.ads import AggregatedDiscovery


class XdsCollector(Collector):
    """Read at scrape time from the server's own counters (no work per response)."""

    def __init__(self, ads: AggregatedDiscovery) -> None:
        self._ads = ads

    def collect(self) -> Iterator[Any]:
        counters = self._ads.counters
        streams = GaugeMetricFamily("controlplane_xds_streams", "ADS streams open now.")
        streams.add_metric((), len(self._ads.streams))
        yield streams
        for name, table, documentation in (
            ("controlplane_xds_responses", counters.responses, "ADS responses sent, by resource type."),
            ("controlplane_xds_acks", counters.acks, "ADS responses clients ACKed, by resource type."),
            ("controlplane_xds_nacks", counters.nacks, "ADS responses clients refused (NACKed), by resource type."),
        ):
            family = CounterMetricFamily(name, documentation, labels=("type",))
            for type_url, count in sorted(table.items()):
                family.add_metric((type_url.rsplit(".", 1)[-1],), count)
            yield family
        refused = CounterMetricFamily("controlplane_xds_refused",
                                      "Resources built but not sent because gRPC clients would refuse them.")
        refused.add_metric((), counters.refused)
        yield refused

    def describe(self) -> Iterable[Any]:
        return []
