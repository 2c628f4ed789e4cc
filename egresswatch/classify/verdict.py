"""Classification that generalises: one category per destination and how it was decided.

Order of evidence, strongest first: a local address or name (`address`); a catalog row, the role
fitting the tool that reached the host when known (`catalog`); a catalogued name on the host's
CNAME chain (`cname`); the known vendor's profile, sharpened by the host's words (`vendor`); the
public domain lists (`list`); the host's words alone (`heuristic`). Pure and never raises.
"""

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from egresswatch.classify.context import role_for_tool
from egresswatch.classify.cues import (
    CUE_CATEGORIES,
    LABEL_ONLY,
    Cue,
    host_words,
    label_cue,
    weak_cue,
)
from egresswatch.classify.destinations import Classification, normalise_host
from egresswatch.classify.locality import LOCAL, address_locality, name_locality
from egresswatch.classify.publiclist import AI_SERVICE, DomainList, ListMatch
from egresswatch.classify.vendors import VendorProfile, build_profiles
from egresswatch.model import Event

if TYPE_CHECKING:  # the catalog builds its classifier from this module
    from egresswatch.classify.catalog import Catalog

SOURCES = ("address", "catalog", "cname", "vendor", "list", "heuristic", "behaviour", "none")
# What an AI vendor's unlisted host can be guessed as (never its registry).
AI_PARTS = frozenset({"cloud-llm-api", "model-cdn"})
# Lists naming a vendor rather than a function: the host's own words may say more.
MIXED_LISTS = frozenset({AI_SERVICE, "package-registry", "docs-web", "mesh-vpn", "other"})
# How much each kind of evidence is trusted (figures measured in bench/classify.py).
CONFIDENCE = {
    "address": 1.0,
    "catalog": 0.95,
    "catalog-tool": 1.0,
    "cname": 0.85,
    "vendor-cue": 0.75,
    "vendor": 0.6,
    "list-cue": 0.6,
    "list": 0.5,
    "list-vendor": 0.45,
    "heuristic": 0.4,
    "none": 0.0,
}
MAX_CHAIN = 16
CACHE_SIZE = 8192  # destinations repeat heavily; a memo makes the steady state dict-speed
# What can be switched off, to measure each mechanism's worth (bench/classify.py).
MECHANISMS = frozenset({"address", "tool", "cname", "vendor", "list", "cues"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """A destination's category, how it was decided (`source`), and how sure (`confidence`).

    `matched` is the evidence: the catalog pattern, "alias->pattern" for a CNAME, the vendor
    domain or list entry, or the cue word; `purpose` and `citation` come from the catalog role.
    """

    host: str | None
    category: str
    source: str
    confidence: float
    matched: str | None = None
    purpose: str = ""
    citation: str = ""
    registrable_domain: str | None = None


class DestinationClassifier:
    """The catalog plus what generalises beyond it; build once, share between threads."""

    __slots__ = ("_cache", "_catalog", "_list_vendors", "_lists", "_on", "_profiles")

    def __init__(
        self,
        catalog: "Catalog",
        lists: DomainList | None = None,
        mechanisms: frozenset[str] = MECHANISMS,
    ) -> None:
        self._catalog = catalog
        self._on = mechanisms
        self._profiles = (
            build_profiles(catalog.entries, catalog.registrable_domain)
            if "vendor" in mechanisms
            else {}
        )
        self._lists = lists if "list" in mechanisms else None
        self._list_vendors: dict[str, ListMatch] | None = None  # built on first need
        self._cache: dict[tuple[str, str | None, tuple[str, ...]], Verdict] = {}

    @property
    def catalog(self) -> "Catalog":
        return self._catalog

    def profile(self, domain: str | None) -> VendorProfile | None:
        return self._profiles.get(domain) if domain else None

    def classify_destination(
        self,
        host: str | None,
        *,
        tool: str | None = None,
        cname_chain: Sequence[str] = (),
        address: str | None = None,
    ) -> Verdict:
        """Classify `host` (or, without a name, the `address`); never raises.

        `tool` is the recognised LLM tool that reached the host, `cname_chain` every name on
        the host's CNAME chain as seen in DNS answers, `address` the destination address.
        """
        where = _locality(host, address) if "address" in self._on else None
        if where is not None and (where[0] == LOCAL or not host):
            return Verdict(host, where[0], "address", CONFIDENCE["address"], where[1])
        if not host:
            return Verdict(host, "unknown", "none", 0.0)
        tool = tool if "tool" in self._on else None
        verdict = self._named(host, tool, cname_chain if "cname" in self._on else ())
        if where is not None and verdict.category == "unknown":
            return Verdict(host, where[0], "address", CONFIDENCE["address"], where[1])
        return verdict

    def _named(self, host: str, tool: str | None, chain: Sequence[str]) -> Verdict:
        key = (host, tool, tuple(chain[:MAX_CHAIN]))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._decide(host, tool, key[2])
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()  # bounded; single dict operations are thread-safe
            self._cache[key] = cached
        return cached

    def _decide(self, host: str, tool: str | None, chain: Sequence[str]) -> Verdict:
        found = self._catalog.classify(host)
        if found.matched is not None:
            return _from_catalog(found, tool)
        return self._beyond_catalog(found, chain, tool)

    def _beyond_catalog(
        self, found: Classification, chain: Sequence[str], tool: str | None
    ) -> Verdict:
        via_cname = self._from_chain(found.host, chain, tool)
        if via_cname is not None:
            return via_cname
        if found.reason is not None and found.reason.startswith("bad-name"):
            return Verdict(found.host, "unknown", "none", 0.0, None, found.reason)
        return self._guess(found.host, found.registrable_domain)

    def _from_chain(self, host: str, chain: Sequence[str], tool: str | None) -> Verdict | None:
        for alias in chain[:MAX_CHAIN]:
            name = normalise_host(alias)
            if name.kind != "dns" or name.text == host:
                continue
            found = self._catalog.classify(name.text)
            if found.matched is not None:
                base = _from_catalog(found, tool)
                return Verdict(
                    host, base.category, "cname", CONFIDENCE["cname"],
                    f"{name.text}->{found.matched}", base.purpose, base.citation,
                )  # fmt: skip
        return None

    def _guess(self, host: str, domain: str | None) -> Verdict:
        cues_on = "cues" in self._on
        sub = _subdomain_words(host, domain) if cues_on else ()
        profile = self.profile(domain)
        listed = self._lists.lookup(host) if self._lists is not None else None
        if profile is not None and not _narrower_than_vendor(listed, domain):
            return _from_profile(host, profile, sub)
        if listed is not None:
            crash = self._crash_vendor(host, domain, listed)
            words = sub if crash is not None else _words_below(host, listed.domain, sub)
            return _from_list(host, domain, crash or listed, words, sibling=crash is not None)
        sibling = self._list_vendor(domain)
        if sibling is not None:
            return _from_list(host, domain, sibling, sub, sibling=True)
        cue = label_cue(_name_words(host, domain)) if cues_on else None
        if cue is not None and cue.word in LABEL_ONLY and cue.word not in sub:
            cue = None  # "ai" in a brand ("some-ai-vendor") says less than an "ai." label
        if cue is not None:
            return _cued(
                host, domain, cue, "heuristic",
                confidence=CONFIDENCE["heuristic"], matched=cue.word,
            )  # fmt: skip
        if "api" in sub:  # the prior: an API host reached by an LLM tool is most often an LLM API
            api = Cue("cloud-llm-api", "api")
            return _cued(host, domain, api, "heuristic", confidence=0.3, matched="api")
        return Verdict(host, "unknown", "none", 0.0, registrable_domain=domain)

    def _crash_vendor(self, host: str, domain: str | None, listed: ListMatch) -> ListMatch | None:
        """A tracking list files a whole vendor as analytics; when the vendor's own SDK endpoints
        (its listed hosts, agreeing) are crash reporting, its unlisted hosts are too."""
        if listed.category != "telemetry" or listed.domain == host:
            return None
        vendor = self._list_vendor(domain)
        return vendor if vendor is not None and vendor.category == "crash-report" else None

    def _list_vendor(self, domain: str | None) -> ListMatch | None:
        """What the lists say of a vendor's other hosts, when they agree (see list_vendors)."""
        if self._lists is None or domain is None:
            return None
        if self._list_vendors is None:
            self._list_vendors = list_vendors(self._lists)
        return self._list_vendors.get(domain)


def list_vendors(lists: DomainList) -> dict[str, ListMatch]:
    """Per domain, a list row of the hosts under it standing for all of them, when at least two
    thirds of its listed hosts share one category (`api.<brand>` beside a listed
    `decide.<brand>` is most likely what the brand's other hosts are). Every parent of a row's
    name is a key, so a vendor is looked up by its registrable domain without a suffix walk."""
    tallies: dict[str, Counter[str]] = {}
    first: dict[tuple[str, str], ListMatch] = {}
    for match in lists.rows():
        labels = match.domain.split(".")
        for start in range(min(len(labels) - 1, MAX_CHAIN)):
            parent = ".".join(labels[start:])
            tallies.setdefault(parent, Counter())[match.category] += 1
            first.setdefault((parent, match.category), match)
    out = {}
    for domain, tally in tallies.items():
        category, count = tally.most_common(1)[0]
        if count * 3 >= 2 * sum(tally.values()):
            out[domain] = first[(domain, category)]
    return out


def _words_below(host: str, listed: str, sub: tuple[str, ...]) -> tuple[str, ...]:
    """The words of `host` below a listed subtree (a private suffix such as googleapis.com is
    its own registrable domain, so its hosts have no words below the vendor)."""
    if host.endswith("." + listed) and len(listed) > 0:
        return host_words(host[: -len(listed) - 1])
    return sub


def _name_words(host: str, domain: str | None) -> tuple[str, ...]:
    """The host's words without its public suffix (".ai" says nothing of a host's purpose)."""
    if domain and "." in domain and host.endswith(domain):
        return host_words(host[: -len(domain)] + domain.split(".", 1)[0])
    return host_words(host)


def _narrower_than_vendor(listed: ListMatch | None, domain: str | None) -> bool:
    """A list row for this host or a subtree below its vendor's domain outweighs the vendor's
    profile (which only says what the vendor's other hosts mostly are)."""
    return listed is not None and listed.domain != domain


def _subdomain_words(host: str, domain: str | None) -> tuple[str, ...]:
    if domain and host.endswith("." + domain):
        return host_words(host[: -len(domain) - 1])
    return () if domain else host_words(host)


def _locality(host: str | None, address: str | None) -> tuple[str, str] | None:
    """(`local`|`lan`, what said so): a loopback address, or a private one / a local name.

    A private address with a name the catalog knows is not trusted to be LAN-only: a proxy or
    VPN gateway on the LAN that carries `api.openai.com` still carries prompts out.
    """
    for evidence, where in ((address, address_locality(address)), (host, name_locality(host))):
        if where is not None and evidence is not None:
            return where, evidence
    return None


def _from_catalog(found: Classification, tool: str | None) -> Verdict:
    role = role_for_tool(found.roles, tool)
    confidence = CONFIDENCE["catalog-tool"] if role is not None else CONFIDENCE["catalog"]
    chosen = role or (found.roles[0] if found.roles else None)
    category = chosen.category if chosen is not None else found.category
    purpose = chosen.purpose if chosen is not None else found.purpose
    citation = chosen.source if chosen is not None else found.source
    return Verdict(
        found.host, category, "catalog", confidence, found.matched, purpose, citation,
        found.registrable_domain,
    )  # fmt: skip


def _from_profile(host: str, profile: VendorProfile, words: tuple[str, ...]) -> Verdict:
    cue = label_cue(words) or weak_cue(words, frozenset(profile.categories))
    if cue is not None and cue.category in CUE_CATEGORIES:
        return _cued(
            host, profile.domain, cue, "vendor",
            confidence=CONFIDENCE["vendor-cue"], matched=profile.domain,
        )  # fmt: skip
    purpose = f"unlisted host of {profile.domain}; its catalogued hosts are mostly {profile.likely}"
    return Verdict(
        host, profile.likely, "vendor", CONFIDENCE["vendor"], profile.domain, purpose,
        registrable_domain=profile.domain,
    )  # fmt: skip


def _from_list(
    host: str, domain: str | None, listed: ListMatch, words: tuple[str, ...], sibling: bool = False
) -> Verdict:
    cue = label_cue(words) if listed.category in MIXED_LISTS or sibling else None
    if cue is None and listed.category == "telemetry":
        # tracking lists file diagnostics with analytics: a crash word in the name says which
        crash = label_cue(_name_words(host, domain))
        cue = crash if crash is not None and crash.category == "crash-report" else None
    if cue is not None:
        return _cued(
            host, domain, cue, "list", confidence=CONFIDENCE["list-cue"], matched=listed.cited
        )
    category, purpose = listed.category, f"on the public list {listed.source_list}"
    if listed.source:
        purpose = f"a default endpoint in {listed.source_list}'s source"
    if sibling:
        purpose = f"unlisted host of {domain}; its hosts on {listed.source_list} are {category}"
    if category == AI_SERVICE:
        weak = weak_cue(words, AI_PARTS)
        category = weak.category if weak is not None else "cloud-llm-api" if not words else "other"
        purpose = f"a host of an AI vendor on {listed.source_list}" + (
            f"; the word {weak.word!r} suggests {weak.category}" if weak is not None else ""
        )
    confidence = CONFIDENCE["list-vendor" if sibling else "list"]
    return Verdict(
        host, category, "list", confidence, listed.cited, purpose, listed.source, domain
    )


def _cued(
    host: str, domain: str | None, cue: Cue, source: str, *, confidence: float, matched: str
) -> Verdict:
    purpose = f"guessed from the word {cue.word!r} in the host name"
    return Verdict(host, cue.category, source, confidence, matched, purpose, "", domain)


def classified_event(
    catalog: "Catalog", event: Event, cname_chain: Sequence[str] = (), name: str | None = None
) -> Event:
    """`event` with its destination's verdict: category, catalog_entry (the evidence matched),
    category_source and category_confidence. The tool that sent it and its address are context;
    `name` stands for the event's host where the caller knows better (a lookup's question).
    """
    obs = event.observation
    # A lookup's addresses are the resolver's and the asker's: its destination is the name.
    address = None if obs.kind == "dns" else obs.flow.dst
    verdict = catalog.classify_destination(
        name or event.host, tool=event.tool, cname_chain=cname_chain, address=address
    )
    return dataclasses.replace(
        event,
        category=verdict.category,
        catalog_entry=verdict.matched,
        category_source=verdict.source,
        category_confidence=verdict.confidence,
    )
