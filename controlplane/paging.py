"""Pages of list answers, bounded by count and by bytes, so any answer fits gRPC's default 4 MiB limit.

A list RPC takes `page_size` (0: DEFAULT_PAGE_SIZE; at most MAX_PAGE_SIZE) and `page_token` (the
`next_page_token` of the previous page), and a page also ends before MAX_PAGE_BYTES, whatever its items
hold: what clients registered or sent may make single items large.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_BYTES", "MAX_PAGE_SIZE", "every_page", "fill", "page_size"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PAGE_BYTES = 2**20
# A repeated message field's tag (1 byte) and length (3 bytes up to 2 MiB) around each item.
_FRAMING = 4

K = TypeVar("K")


def page_size(requested: int) -> int:
    """The number of items a page holds for a request's `page_size`."""
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def fill(page: Any, items: Iterable[tuple[K, Callable[[], Any]]], *, size: int, used: int = 0,
         max_bytes: int = MAX_PAGE_BYTES) -> K | None:
    """Append the messages `items` build (key, build) to the repeated field `page` while it holds fewer
    than `size` and stays within `max_bytes` (counting `used`, the rest of the answer); the first one always
    goes in. The key of the last message appended when more remain (the next page starts after it), else
    None. Nothing past the page is built."""
    last: K | None = None
    for key, build in items:
        if len(page) == size:
            return last
        item = build()
        item_bytes = item.ByteSize() + _FRAMING
        if len(page) and used + item_bytes > max_bytes:
            return last
        page.append(item)
        used += item_bytes
        last = key
    return None


def every_page(call: Callable[..., Any], first: Any, *, timeout: float, max_pages: int = 10_000) -> list[Any]:
    """Every page of a paged list RPC, the caller's side: `call(first)`, then `first` with each page's
    `next_page_token` until one has none (RuntimeError after `max_pages`, rather than following a server
    that never ends)."""
    pages = [call(first, timeout=timeout)]
    while pages[-1].next_page_token:
        if len(pages) >= max_pages:
            raise RuntimeError(f"{type(first).__name__}: no last page after {max_pages} pages")
        request = type(first)()
        request.CopyFrom(first)
        request.page_token = pages[-1].next_page_token
        pages.append(call(request, timeout=timeout))
    return pages
