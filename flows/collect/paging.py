"""Following nextLinks without following them forever: one rule for every paged listing.

An empty page that links on is legal (the next one may hold rows), but a service that keeps
answering "nothing yet, see nextLink", or links back to a page already read, would be followed
forever: the Azure SDK pagers (`ItemPaged`) and the Cost Management loop both follow any
nextLink they are given. `NextLinks` refuses both, with an error naming what was being listed
(the caller puts scope and month or snapshot in it), before any partition is written.

SDK listings keep the real client: `follow_pages` iterates the pager's own `by_page()` and reads
each page's nextLink from the page iterator's `continuation_token` (azure-core stores the
nextLink there after each page), so requests, retries and deserialisation stay the SDK's. The
URL of every page requested, the first one included (the SDK builds it), is seen through
azure-core's per-call `raw_request_hook`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from azure.core.paging import ItemPaged, PageIterator

T = TypeVar("T")

# This many empty pages in a row, each with a nextLink, and the listing is refused.
MAX_EMPTY_PAGES_IN_A_ROW = 50


class EndlessPaging(ValueError):
    """A listing whose nextLinks make no progress: more pages would be followed forever."""


def page_address(url: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What identifies the page a URL asks for, however it is spelt: host, path (ARM paths are
    case-insensitive) and the decoded query parameters in any order. The SDK sends `$filter`
    where a nextLink may carry `%24filter`: both ask for the same page."""
    parts = urlsplit(url)
    query = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return parts.netloc.lower(), unquote(parts.path).lower(), query


class NextLinks:
    """The pages of one listing, checked one by one before the next is requested."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._read: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
        self._empty_in_a_row = 0

    def requested(self, url: str) -> None:
        """Record the URL of a page being requested (a nextLink back to it is refused)."""
        self._read.add(page_address(url))

    def check(self, items: int, next_link: str | None) -> None:
        """Record a page of `items` items linking to `next_link`; raise EndlessPaging when
        following that link would repeat a page or extend a run of empty pages past the limit."""
        self._empty_in_a_row = 0 if items else self._empty_in_a_row + 1
        if next_link is None:
            return
        if page_address(next_link) in self._read:
            raise EndlessPaging(f"{self.what}: nextLink {next_link} repeats a page already read")
        if self._empty_in_a_row >= MAX_EMPTY_PAGES_IN_A_ROW:
            raise EndlessPaging(
                f"{self.what}: {self._empty_in_a_row} empty pages in a row, each with a nextLink; "
                "the service is not making progress, run again later"
            )
        self.requested(next_link)


def follow_pages(listing: Callable[..., ItemPaged[T]], what: str) -> Iterator[T]:
    """Every item of an SDK listing, page by page; EndlessPaging (naming `what`) instead of
    requesting a page that repeats one already read or prolongs a run of empty pages.

    `listing` is the SDK call with its arguments bound (`functools.partial`); it is called once,
    with `raw_request_hook`, which azure-core calls with every request the pager sends. Lazy
    like the pager itself: a page is requested when the items before it are consumed, and an
    SDK error (404, exhausted retries) surfaces where the pager would raise it.
    """
    links = NextLinks(what)

    def record(request: Any) -> None:
        links.requested(request.http_request.url)

    pages = listing(raw_request_hook=record).by_page()
    if not isinstance(pages, PageIterator):
        raise TypeError(
            f"{what}: the SDK pages with {type(pages).__name__}, not azure-core's PageIterator, "
            "so its nextLinks cannot be checked"
        )
    for page in pages:
        items = list(page)
        # The PageIterator holds the nextLink of the page just read (None after the last page).
        links.check(len(items), pages.continuation_token)
        yield from items
