"""mirrorflow._atomic_file: the experiments' and benchmarks' outputs, whole or not at all."""

from __future__ import annotations

import json

import pytest

from mirrorflow._atomic_file import write_atomic, write_text_atomic


def test_the_new_content_replaces_the_old_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old")
    write_text_atomic(path, json.dumps({"a": 1}))
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_partial_one(tmp_path, error):
    path = tmp_path / "result.json"
    path.write_text('{"finished": true}')

    def half_then_fail(partial):
        partial.write_text('{"finish')
        raise error

    with pytest.raises(type(error)):
        write_atomic(path, half_then_fail)
    assert path.read_text() == '{"finished": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_first_write_that_fails_leaves_no_file(tmp_path):
    path = tmp_path / "result.csv"
    with pytest.raises(ValueError):
        write_atomic(path, lambda partial: (partial.write_text("a,b\n"), int("x")))
    assert list(tmp_path.iterdir()) == []
