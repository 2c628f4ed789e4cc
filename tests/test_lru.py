"""The one LRU map: against a plain list model of recency, under random operations."""

from hypothesis import given
from hypothesis import strategies as st

from egresswatch.lru import Lru

OPS = st.lists(
    st.tuples(st.sampled_from(["get", "peek", "put", "pop"]), st.integers(0, 6)), max_size=60
)


@given(OPS)
def test_behaves_like_a_recency_list(ops: list[tuple[str, int]]) -> None:
    lru: Lru[int, str] = Lru(3)
    model: list[tuple[int, str]] = []  # oldest first
    for n, (op, key) in enumerate(ops):
        found = [item for item in model if item[0] == key]
        if op == "put":
            model = [item for item in model if item[0] != key] + [(key, f"v{n}")]
            pushed_out = model.pop(0) if len(model) > 3 else None
            assert lru.put(key, f"v{n}") == pushed_out
        elif op == "get":
            if found:
                model = [item for item in model if item[0] != key] + found
            assert lru.get(key) == (found[0][1] if found else None)
        elif op == "peek":
            assert lru.peek(key) == (found[0][1] if found else None)
        else:
            model = [item for item in model if item[0] != key]
            assert lru.pop(key) == (found[0][1] if found else None)
        assert list(lru.items()) == model
        assert lru.oldest() == (model[0] if model else None)
        assert len(lru) == len(model)
        assert all((k in lru) == any(k == m for m, _v in model) for k in range(7))
