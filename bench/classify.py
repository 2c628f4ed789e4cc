"""Benchmark: classification rate (hosts/s) of the destination catalog.

    python bench/classify.py [--hosts 200000]

Three mixes, each through a freshly loaded catalog: all-unique hosts (no memo hits: the compiled
lookup plus normalisation and the public-suffix walk), a realistic mix (a few hundred distinct
hosts repeated, as on a desktop), and the same mix with the memo warm. The peer is the naive
approach the compiled index replaces: a loop over every catalog pattern per host (fnmatch).
"""

import argparse
import fnmatch
import random
import statistics
import time
from collections.abc import Callable, Sequence

from egresswatch.classify.catalog import load_catalog


def _hosts(patterns: Sequence[str], count: int, rng: random.Random, unique: bool) -> list[str]:
    """Catalog hosts, subdomains of them and unknown hosts (each `u<i>.`-prefixed if unique)."""
    anchors = [p.replace("*.", "").replace("*", "x") for p in patterns]
    out = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.5:
            host = rng.choice(anchors)
        elif kind < 0.8:
            host = f"a{rng.randrange(4)}.{rng.choice(anchors)}"
        else:
            host = f"h{rng.randrange(20)}.example{rng.randrange(20)}.com"
        out.append(f"u{i}.{host}" if unique else host)
    return out


def _rate(fn: Callable[[str], object], hosts: list[str], runs: int = 3) -> float:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for host in hosts:
            fn(host)
        rates.append(len(hosts) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(1)
    started = time.perf_counter()
    catalog = load_catalog()
    print(f"catalog: {len(catalog)} patterns, loaded in {time.perf_counter() - started:.3f} s")
    patterns = [entry.pattern for entry in catalog.entries]
    unique = _hosts(patterns, args.hosts, rng, unique=True)
    mix = _hosts(patterns, args.hosts, rng, unique=False)
    print(f"all-unique hosts:    {_rate(catalog.classify, unique, 1):>12,.0f} hosts/s")
    fresh = load_catalog()
    cold = _rate(fresh.classify, mix, 1)
    print(f"realistic mix, cold: {cold:>12,.0f} hosts/s ({len(set(mix))} distinct)")
    print(f"realistic mix, warm: {_rate(fresh.classify, mix):>12,.0f} hosts/s")

    def naive(host: str) -> str | None:
        return next((p for p in patterns if fnmatch.fnmatchcase(host, p)), None)

    sample = unique[:5000]
    naive_rate = _rate(naive, sample, 1)
    ours = _rate(load_catalog().classify, sample, 1)
    print(
        f"peer, loop over {len(patterns)} patterns (fnmatch): {naive_rate:,.0f} hosts/s; "
        f"compiled lookup: {ours:,.0f} hosts/s; ratio {ours / naive_rate:.1f}x"
    )


if __name__ == "__main__":
    main()
