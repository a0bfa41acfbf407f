"""Paging rules shared by the demo's List RPCs."""

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    """The page size to use: the default for 0, capped at MAX_PAGE_SIZE."""
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
