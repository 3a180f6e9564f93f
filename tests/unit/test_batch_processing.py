"""batch-processing's pure logic: record validation, chunking, the job's report."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import load_handler

records = load_handler("batch_processing", "records")


@pytest.mark.parametrize(("total", "size"), [(23, 5), (20, 5), (1, 5), (5, 1), (0, 3), (7, 7)])
def test_n_records_at_chunk_size_k_make_ceil_n_over_k_chunks_in_order(
    total: int, size: int
) -> None:
    items = list(range(total))
    chunks = records.chunk(items, size)
    assert len(chunks) == math.ceil(total / size) == records.chunk_count(total, size)
    assert all(len(c) == size for c in chunks[:-1])
    assert [i for c in chunks for i in c] == items


@pytest.mark.parametrize("size", [0, -1, 2.5, "5", None, True])
def test_a_chunk_size_that_is_not_a_positive_integer_is_refused(size: object) -> None:
    with pytest.raises(records.InvalidInput, match="chunk_size must be a positive integer"):
        records.chunk([1, 2], size)


def test_an_input_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(records.InvalidInput, match="JSON list"):
        records.chunk({"id": "a"}, 2)


def test_a_valid_record_is_returned_as_is() -> None:
    record = {"id": "a", "amount": 0.1, "simulate_failures": 1}
    assert records.parse_body(json.dumps(record)) == record
    assert str(records.to_decimal(0.1)) == "0.1"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"amount": 1}, "missing id"),
        ({"id": "", "amount": 1}, "missing id"),
        ({"id": "a"}, "amount is not a number"),
        ({"id": "a", "amount": "3"}, "amount is not a number"),
        ({"id": "a", "amount": True}, "amount is not a number"),
        ({"id": "a", "amount": -1}, "amount is negative"),
        ([1], "not a JSON object"),
    ],
)
def test_invalid_records_are_refused_saying_why(record: object, reason: str) -> None:
    with pytest.raises(records.InvalidRecord, match=reason):
        records.validate(record)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(records.InvalidRecord, match="not JSON"):
        records.parse_body("oops")


def test_the_report_counts_every_record_once() -> None:
    report = records.summarise(
        [
            {"index": 0, "valid": ["a", "b"], "invalid": [{"id": "c", "reason": "missing id"}]},
            {"index": 1, "valid": ["d"], "invalid": []},
        ]
    )
    assert report == {
        "chunks": 2,
        "records": 4,
        "written": 3,
        "rejected": 1,
        "invalid": [{"id": "c", "reason": "missing id"}],
    }
