"""controlplane.paging: pages end by count and by bytes, always hold one item, and build nothing past the end."""

from __future__ import annotations

import pytest

from controlplane.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, every_page, fill, page_size
from controlplane.v1 import registry_pb2


def summaries(sizes: list[int], built: list[int]) -> list[tuple[int, object]]:
    def build(n: int) -> registry_pb2.ServiceSummary:
        built.append(n)
        return registry_pb2.ServiceSummary(name=f"s{n}", tags=["x" * sizes[n]])

    return [(n, lambda n=n: build(n)) for n in range(len(sizes))]


def test_a_page_ends_at_its_size_without_building_the_next_item() -> None:
    built: list[int] = []
    page = registry_pb2.ListServicesResponse().services
    assert fill(page, summaries([10] * 5, built), size=2) == 1
    assert [s.name for s in page] == ["s0", "s1"] and built == [0, 1]


def test_a_page_ends_before_its_bytes_run_over_but_always_holds_one_item() -> None:
    built: list[int] = []
    page = registry_pb2.ListServicesResponse().services
    assert fill(page, summaries([600, 600, 10], built), size=10, max_bytes=1000) == 0
    assert [s.name for s in page] == ["s0"]
    alone = registry_pb2.ListServicesResponse().services
    assert fill(alone, summaries([5000], []), size=10, max_bytes=1000) is None  # larger than a page, and the last
    assert len(alone) == 1


def test_the_last_page_has_no_next_token_and_bytes_count_what_the_answer_holds_already() -> None:
    page = registry_pb2.ListServicesResponse().services
    assert fill(page, summaries([10, 10], []), size=10) is None and len(page) == 2
    used = registry_pb2.ListServicesResponse().services
    assert fill(used, summaries([100, 100], []), size=10, used=900, max_bytes=1100) == 0


def test_page_size_defaults_and_is_capped() -> None:
    assert (page_size(0), page_size(7), page_size(10**6)) == (DEFAULT_PAGE_SIZE, 7, MAX_PAGE_SIZE)


def test_every_page_follows_the_tokens_keeping_the_request_and_stops_at_max_pages() -> None:
    sent: list[registry_pb2.ListServicesRequest] = []

    def list_services(request: registry_pb2.ListServicesRequest, timeout: float) -> registry_pb2.ListServicesResponse:
        sent.append(request)
        after = int(request.page_token or 0)
        return registry_pb2.ListServicesResponse(next_page_token=str(after + 1) if after < 2 else "")

    pages = every_page(list_services, registry_pb2.ListServicesRequest(page_size=7), timeout=5)
    assert len(pages) == 3 and [(r.page_size, r.page_token) for r in sent] == [(7, ""), (7, "1"), (7, "2")]
    with pytest.raises(RuntimeError, match="no last page after 2 pages"):
        every_page(list_services, registry_pb2.ListServicesRequest(), timeout=5, max_pages=2)
