import pytest

from fci.sharding import in_shard, parse_shard, shard_items


def test_shards_are_disjoint_cover_and_order_free():
    items = [{"seed": s, "hidden": h} for s in range(20) for h in (4, 8, 16)]
    slices = [shard_items(items, (i, 4), key=lambda d: d) for i in range(4)]
    flat = [tuple(sorted(d.items())) for s in slices for d in s]
    assert len(flat) == len(items) == len(set(flat))
    assert all(slices)  # 60 items over 4 shards: none empty
    rev = shard_items(items[::-1], (2, 4), key=lambda d: d)
    assert sorted(map(str, rev)) == sorted(map(str, slices[2]))
    assert shard_items(items, None, key=lambda d: d) == items
    assert in_shard({"a": 1}, None)


@pytest.mark.parametrize("text", ["1", "a/b", "4/4", "-1/3", "0/0"])
def test_bad_shard_strings(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1)
    assert parse_shard("3/8") == (3, 8)
    assert parse_shard(None) is None
