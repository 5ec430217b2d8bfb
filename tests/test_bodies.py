"""The one reader of a route's JSON-object body: its bound, its shape, its keys, and the status each refusal has."""

from __future__ import annotations

import pytest

from workbench.server.bodies import BadRequest, checked_keys, parse_json_object

KEYS = frozenset({"model", "pinned"})


def test_an_object_with_known_keys_is_returned_as_sent() -> None:
    assert parse_json_object(b'{"model": "m", "pinned": true}', KEYS, 100) == {"model": "m", "pinned": True}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"model": "' + b"x" * 200 + b'"}', 413, "larger than 100 bytes"),
        (b"{not json", 400, "not JSON"),
        (b"[1, 2]", 400, 'JSON object: {"model": id}'),
        (b'{"model": "m", "evil": 1}', 400, "unknown key(s): 'evil' (known: model, pinned)"),
        (b"", 400, "not JSON"),
        (b"\xff\xfe", 400, "not JSON"),
    ],
)
def test_each_refusal_says_why_with_its_status(body: bytes, status: int, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_json_object(body, KEYS, 100, '{"model": id}')
    assert caught.value.status == status and words in str(caught.value)


def test_no_body_is_an_empty_object_only_where_the_route_says_so() -> None:
    assert parse_json_object(b"  \n", frozenset(), 100, empty_is_object=True) == {}
    with pytest.raises(BadRequest, match="not JSON"):
        parse_json_object(b"", frozenset(), 100)


def test_unknown_keys_are_cut_short_in_the_message() -> None:
    document = {f"k{i}" * 40: i for i in range(20)}
    with pytest.raises(BadRequest) as caught:
        checked_keys(document, frozenset())
    message = str(caught.value)
    assert "(known: none)" in message and len(message) < 500
