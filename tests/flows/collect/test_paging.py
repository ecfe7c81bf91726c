"""`paging.follow_pages` over a real azure-core pager: legal empty pages are followed, a run of
empty pages that never ends and a nextLink back to a page already read are refused."""

from types import SimpleNamespace

import pytest
from azure.core.paging import ItemPaged

from flows.collect.paging import (
    MAX_EMPTY_PAGES_IN_A_ROW,
    EndlessPaging,
    follow_pages,
    page_address,
)

WHAT = "listing of /subscriptions/x for 2026-10"


FIRST = "https://arm.example/first"


def scripted_pager(answers):
    """An SDK listing call: a real `ItemPaged` answering from `answers`, {link: (items,
    nextLink)}, the first request being link None (as the SDK's `get_next(None)`, sent to
    FIRST). Each request is shown to `raw_request_hook` as azure-core's CustomHookPolicy does.
    `requested` records the links asked for."""
    requested = []

    def listing(raw_request_hook):
        def get_next(link):
            requested.append(link)
            raw_request_hook(SimpleNamespace(http_request=SimpleNamespace(url=link or FIRST)))
            return answers[link]

        def extract_data(answer):
            items, next_link = answer
            return next_link, iter(items)

        return ItemPaged(get_next, extract_data)

    return listing, requested


def empty_chain(count, then):
    """`count` empty pages, the first requested as None, page i linking to page i + 1, the
    last linking to `then`."""
    links = [None, *(f"empty-{i}" for i in range(1, count))]
    return {link: ([], links[i + 1] if i + 1 < count else then) for i, link in enumerate(links)}


def test_the_limit_is_fifty_empty_pages_in_a_row():
    # Stated here so the figures below read as numbers: 50 empty pages (50 requests) at most.
    assert MAX_EMPTY_PAGES_IN_A_ROW == 50


def test_empty_pages_between_pages_of_items_are_followed_and_nothing_is_lost():
    listing, requested = scripted_pager(
        {
            None: ([1, 2], "a"),
            "a": ([], "b"),
            "b": ([], "c"),
            "c": ([3], None),
        }
    )
    assert list(follow_pages(listing, WHAT)) == [1, 2, 3]
    assert requested == [None, "a", "b", "c"]


def test_an_empty_listing_is_one_empty_page_without_a_next_link():
    listing, requested = scripted_pager({None: ([], None)})
    assert list(follow_pages(listing, WHAT)) == []
    assert requested == [None]


def test_forty_nine_empty_pages_in_a_row_then_items_are_collected():
    answers = {**empty_chain(49, then="rows"), "rows": ([7, 8], None)}
    listing, requested = scripted_pager(answers)
    assert list(follow_pages(listing, WHAT)) == [7, 8]
    assert len(requested) == 49 + 1


def test_a_page_of_items_restarts_the_count_of_empty_pages():
    # 49 empty, 1 item, 49 empty, 1 item: 98 empty pages in all, never 50 in a row.
    first = empty_chain(49, then="middle")
    second = {f"second-{i}": ([], f"second-{i + 1}" if i < 49 else "last") for i in range(1, 50)}
    answers = {**first, "middle": ([1], "second-1"), **second, "last": ([2], None)}
    listing, requested = scripted_pager(answers)
    assert list(follow_pages(listing, WHAT)) == [1, 2]
    assert len(requested) == 49 + 1 + 49 + 1


def test_fifty_empty_pages_in_a_row_are_refused_without_asking_for_the_fifty_first():
    answers = {**empty_chain(50, then="rows"), "rows": ([7], None)}
    listing, requested = scripted_pager(answers)
    with pytest.raises(EndlessPaging) as raised:
        list(follow_pages(listing, WHAT))
    assert str(raised.value) == (
        f"{WHAT}: 50 empty pages in a row, each with a nextLink; the service is not making "
        "progress, run again later"
    )
    assert len(requested) == 50 and "rows" not in requested


def test_a_next_link_back_to_a_page_already_read_is_refused():
    listing, requested = scripted_pager({None: ([1], "a"), "a": ([2], "b"), "b": ([3], "a")})
    items = follow_pages(listing, WHAT)
    with pytest.raises(EndlessPaging, match=f"^{WHAT}: nextLink a repeats a page already read$"):
        list(items)
    assert requested == [None, "a", "b"]


def test_a_next_link_back_to_the_first_page_is_refused_though_the_sdk_built_its_url():
    listing, requested = scripted_pager({None: ([1], FIRST), FIRST: ([1], "a")})
    with pytest.raises(EndlessPaging, match=f"nextLink {FIRST} repeats a page already read"):
        list(follow_pages(listing, WHAT))
    assert requested == [None]


def test_items_are_requested_only_as_they_are_consumed():
    listing, requested = scripted_pager({None: ([1], "a"), "a": ([2], None)})
    items = follow_pages(listing, WHAT)
    assert requested == []
    assert next(items) == 1
    assert requested == [None]


def test_a_pager_whose_pages_carry_no_next_link_is_refused_rather_than_trusted():
    class Pages:
        def __init__(self, *args, **kwargs):
            pass

        def __iter__(self):
            return iter([[1]])

    def listing(raw_request_hook):
        return ItemPaged(lambda link: None, lambda answer: (None, []), page_iterator_class=Pages)

    with pytest.raises(TypeError, match=f"^{WHAT}: the SDK pages with Pages, not azure-core"):
        list(follow_pages(listing, WHAT))


def test_a_page_is_known_however_its_url_is_spelt():
    sent = "https://ARM.example/subscriptions/s/providers/Microsoft.Insights/values?a=1&$filter=x y"
    linked = "https://arm.example/subscriptions/s/providers/microsoft.insights/values?%24filter=x%20y&a=1"
    assert page_address(sent) == page_address(linked)
    assert page_address(f"{sent}&$skiptoken=AA") != page_address(f"{sent}&$skiptoken=AB")
