"""Benchmark: accuracy on hosts the catalog has never seen, unknown rate, and classification rate.

    python bench/classify.py [--hosts 200000] [--splits 7] [--corpus ../shared/corpus]

Accuracy, the honest way: a random third of the catalog's vendors (registrable domains; IP rows
are address lists, not names, and are left out) is held out, the catalog is rebuilt without them,
and each held-out pattern's example host is classified by `classify_destination` with all
mechanisms, with none (the catalog alone, as before), and with each one removed, and with each
public list source removed (v2fly alone, without the libraries' endpoints, without
ShadowWhisperer); the share of held-out hosts a library endpoint row names exactly is printed
too (that part is knowledge from another tool's source, not inference), and the accuracy on the
held-out hosts no library row covers. "right" means the
held-out row's primary category; a `model-registry` answer for a host that is not one is counted
apart. Medians over --splits random splits. Then the unknown rate on the corpus captures' names
(SNI, DNS questions with their CNAME chains), before and after.

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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from egresswatch.capture.pcapfile import read_frames
from egresswatch.classify.catalog import (
    Catalog,
    RawRow,
    build_entries,
    load_catalog,
    packaged_catalog_text,
    parse_catalog,
)
from egresswatch.classify.destinations import ip_literal, pattern_anchor
from egresswatch.classify.publiclist import (
    DomainList,
    library_hosts,
    parse_domain_list,
    public_lists,
    shadowwhisperer_lists,
    v2fly_lists,
)
from egresswatch.classify.verdict import MECHANISMS, DestinationClassifier
from egresswatch.counters import Counters
from egresswatch.model import DnsMessage
from egresswatch.pipeline import ObservationDecoder

GUESSING = ("vendor", "list", "cues", "cname")
# The v2fly lists vendored first; the rows added on 2026-12-04 are left out to show their share.
FIRST_LISTS = frozenset(
    {"sentry", "category-doh", "category-proxy-tunnels", "category-vpnservices",
     "category-container", "category-ip-geo-detect", "category-ntp", "category-ads-all",
     "category-ai-!cn", "category-forums", "category-dev"}
)  # fmt: skip


def first_lists() -> DomainList:
    """The vendored lists without the rows added on 2026-12-04."""
    path = Path(__file__).parent.parent / "egresswatch" / "data" / "v2fly-lists.csv"
    lines = path.read_text("utf-8").splitlines(keepends=True)
    kept = [
        line for line in lines if line.startswith(("#", "kind,")) or _list_of(line) in FIRST_LISTS
    ]
    return parse_domain_list("".join(kept), str(path))


def _list_of(line: str) -> str:
    fields = line.split(",")
    return fields[2] if len(fields) > 2 else ""


def _example(pattern: str) -> str:
    """A host a pattern matches: subtree wildcards get a label, inner globs a digit (no word)."""
    return (
        pattern.replace("*.", "zz9.", 1) if pattern.startswith("*.") else pattern.replace("*", "7")
    )


def _vendor_rows(rows: Sequence[RawRow], catalog: Catalog) -> dict[str, list[RawRow]]:
    by_vendor: dict[str, list[RawRow]] = {}
    for pattern, role in rows:
        if ip_literal(pattern) is not None:
            continue
        vendor = catalog.registrable_domain(pattern_anchor(pattern)) or pattern_anchor(pattern)
        by_vendor.setdefault(vendor, []).append((pattern, role))
    return by_vendor


def _held_out_run(
    rows: Sequence[RawRow], held_patterns: set[str]
) -> dict[str, tuple[float, int, int]]:
    """Per mechanism set: (share right, false model-registry, hosts) for one held-out set."""
    catalog = Catalog(build_entries([row for row in rows if row[0] not in held_patterns]))
    truth: dict[str, str] = {}
    for pattern, role in rows:
        if pattern in held_patterns:
            truth.setdefault(_example(pattern), role.category)  # first row = primary role
    runs = [(label, mechanisms, public_lists()) for label, mechanisms in _mechanism_sets().items()]
    runs.append(("all, first lists only", MECHANISMS, first_lists()))
    runs.append(("all, v2fly lists only", MECHANISMS, v2fly_lists()))
    without_libraries = v2fly_lists().merged(shadowwhisperer_lists())
    runs.append(("all but library hosts", MECHANISMS, without_libraries))
    runs.append(("all but shadowwhisperer", MECHANISMS, library_hosts().merged(v2fly_lists())))
    out = {}
    everything: dict[str, str] = {}
    for label, mechanisms, lists in runs:
        classifier = DestinationClassifier(catalog, lists, mechanisms)
        answers = {h: classifier.classify_destination(h).category for h in truth}
        everything = everything or answers  # the first run is "all"
        right = sum(answers[h] == c for h, c in truth.items())
        false_reg = sum(answers[h] == "model-registry" != c for h, c in truth.items())
        out[label] = (right / len(truth), false_reg, len(truth))
    # How many held-out hosts a library's endpoint row names exactly (the same host cited from
    # another tool's source): the part of "all" that is knowledge, not inference.
    named = {h for h in truth if library_hosts().lookup(h) is not None}
    out["(hosts named exactly by lib-hosts)"] = (len(named) / len(truth), 0, len(truth))
    rest = [h for h in truth if h not in named]
    right_rest = sum(everything[h] == truth[h] for h in rest)
    out["all, on hosts no lib-hosts row names"] = (right_rest / max(1, len(rest)), 0, len(rest))
    return out


def _third_of_vendors(by_vendor: dict[str, list[RawRow]], seed: int) -> set[str]:
    vendors = sorted(by_vendor)
    held = random.Random(seed).sample(vendors, len(vendors) // 3)
    return {pattern for vendor in held for pattern, _ in by_vendor[vendor]}


def _third_of_known_vendors_hosts(by_vendor: dict[str, list[RawRow]], seed: int) -> set[str]:
    """A third of the patterns of vendors with several, so each keeps at least one."""
    rng = random.Random(seed)
    held: set[str] = set()
    for vendor in sorted(by_vendor):
        patterns = sorted({pattern for pattern, _ in by_vendor[vendor]})
        if len(patterns) >= 2:
            held.update(rng.sample(patterns, max(1, len(patterns) // 3)))
    return held


def _mechanism_sets() -> dict[str, frozenset[str]]:
    sets = {"all": MECHANISMS, "none (catalog only)": MECHANISMS - set(GUESSING)}
    for name in GUESSING:
        sets[f"all but {name}"] = MECHANISMS - {name}
        sets[f"only {name}"] = (MECHANISMS - set(GUESSING)) | {name}
    return sets


def held_out_accuracy(splits: int) -> None:
    """Print median accuracy on held-out vendors (and known vendors' held-out hosts)."""
    rows = parse_catalog(packaged_catalog_text(), "packaged")
    by_vendor = _vendor_rows(rows, load_catalog())
    for title, choose in (
        (f"held-out third of {len(by_vendor)} vendors", _third_of_vendors),
        ("held-out third of the hosts of vendors with several (vendor stays known)",
         _third_of_known_vendors_hosts),
    ):  # fmt: skip
        runs = [_held_out_run(rows, choose(by_vendor, seed)) for seed in range(splits)]
        print(f"{title}; {splits} random splits, median (min-max):")
        for label in runs[0]:
            _print_runs(label, [run[label] for run in runs])


def _print_runs(label: str, results: list[tuple[float, int, int]]) -> None:
    shares = [share for share, _, _ in results]
    hosts = statistics.median(n for _, _, n in results)
    print(
        f"  {label:<22} right {statistics.median(shares):6.1%} ({min(shares):.0%}-"
        f"{max(shares):.0%}; ~{hosts:.0f} hosts)  false model-registry {max(r[1] for r in results)}"
    )


def _corpus_names(corpus: Path) -> Iterator[tuple[str, tuple[str, ...], str | None]]:
    """(name, CNAME chain, destination address) for each SNI and DNS question in the corpus."""
    for path in sorted((corpus / "pcaps").glob("*.pcap*")):
        decoder = ObservationDecoder()
        for frame in read_frames(path, Counters()):
            for obs in decoder.decode_frame(frame.ts, frame.linktype, frame.data):
                if obs.hello is not None and obs.hello.sni:
                    yield obs.hello.sni, (), obs.flow.dst
                elif obs.dns is not None and obs.dns.qname and obs.dns.is_response:
                    yield obs.dns.qname, _cname_chain(obs.dns), None


def _cname_chain(msg: DnsMessage) -> tuple[str, ...]:
    cnames = {
        a.name: a.data.rstrip(".").lower() for a in msg.answers if a.type == "CNAME" and a.data
    }
    chain = [(msg.qname or "").rstrip(".").lower()]
    while chain[-1] in cnames and len(chain) < 16:
        chain.append(cnames[chain[-1]])
    return tuple(chain)


def corpus_unknown_rate(corpus: Path) -> None:
    """Print the unknown rate of the corpus's distinct names, catalog alone vs generalised."""
    catalog = load_catalog()
    names: dict[str, tuple[tuple[str, ...], str | None]] = {}
    for name, chain, address in _corpus_names(corpus):
        names.setdefault(name, (chain, address))
    before = sum(catalog.classify(n).category in ("unknown", "other") for n in names)
    verdicts = [
        catalog.classify_destination(n, cname_chain=c, address=a) for n, (c, a) in names.items()
    ]
    after = sum(v.category == "unknown" for v in verdicts)
    no_chain = sum(catalog.classify_destination(n, address=a).category == "unknown"
                   for n, (_, a) in names.items())  # fmt: skip
    first = DestinationClassifier(catalog, first_lists())
    first_only = sum(first.classify_destination(n, cname_chain=c, address=a).category == "unknown"
                     for n, (c, a) in names.items())  # fmt: skip
    sources = Counter(v.source for v in verdicts)
    print(
        f"corpus ({corpus}): {len(names)} distinct names; unknown or vendor-only 'other' with the "
        f"catalog alone {before / len(names):.1%}, unknown now {after / len(names):.1%} "
        f"(without CNAME chains {no_chain / len(names):.1%}, with the first lists only "
        f"{first_only / len(names):.1%}); decided by {dict(sources.most_common())}"
    )


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
    parser.add_argument("--splits", type=int, default=7)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    args = parser.parse_args()
    held_out_accuracy(args.splits)
    if (args.corpus / "pcaps").is_dir():
        corpus_unknown_rate(args.corpus)
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
    fresh_catalog = load_catalog()
    fresh_catalog.classify_destination("warm.example")  # builds profiles and lists once
    generalised = _rate(fresh_catalog.classify_destination, sample, 1)
    print(
        f"classify_destination (catalog + cname/vendor/lists/cues) on the same unique hosts: "
        f"{generalised:,.0f} hosts/s; ratio {generalised / ours:.2f}x the catalog lookup alone"
    )
    warm = _rate(fresh_catalog.classify_destination, mix)
    print(f"classify_destination, realistic mix, warm: {warm:,.0f} hosts/s")


if __name__ == "__main__":
    main()
