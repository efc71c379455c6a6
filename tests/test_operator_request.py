"""One check for an operator's action, whether it comes from the CLI or the API."""

from __future__ import annotations

import pytest

from extrusion.exits import EX_DATAERR, EX_USAGE
from extrusion.keys import operator_key
from extrusion.scoring.events import OperatorVerb
from extrusion.scoring.operator import (
    MAX_REASON_CHARS,
    MAX_WHO_CHARS,
    OperatorError,
    operator_request,
)
from extrusion.scoring.overrides import SenderMap


def test_the_action_carries_the_canonical_key_and_trimmed_words() -> None:
    action = operator_request("block", "ip:2001:DB8::0001", "  stolen  ", " noc ", 5.0,
                              operator_key)
    assert (action.sender, action.verb, action.who, action.why, action.time) == (
        "ip:2001:db8::1", OperatorVerb.BLOCK, "noc", "stolen", 5.0)


def test_the_words_are_bounded() -> None:
    action = operator_request(OperatorVerb.HOLD, "sasl:bob", "x" * 50_000, "w" * 5_000, 0.0,
                              operator_key)
    assert len(action.why) == MAX_REASON_CHARS
    assert len(action.who) == MAX_WHO_CHARS


@pytest.mark.parametrize(("verb", "sender", "why", "who", "status", "said"), [
    ("delete", "sasl:bob", "r", "noc", None, "unknown action 'delete'"),
    ("hold", "bob", "r", "noc", EX_USAGE, "bob"),  # no prefix: malformed
    ("hold", "customer:nobody", "r", "noc", EX_DATAERR, "nobody"),  # no such customer
    ("hold", "sasl:bob", "   ", "noc", None, "a reason is required"),
    ("hold", "sasl:bob", "r", " ", None, "name must not be empty"),
])
def test_refused_before_anything_is_written(verb: str, sender: str, why: str, who: str,
                                            status: int | None, said: str) -> None:
    with pytest.raises(OperatorError) as caught:
        operator_request(verb, sender, why, who, 0.0, SenderMap(()).operator_key)
    assert caught.value.status == status
    assert said in str(caught.value)
