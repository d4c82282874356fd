"""Known analytics and advertising cookie names, so a tracker cannot be declared essential,
and known tracker endpoints, so a request before consent can be recognised.

The curated facts ship inside the package (``knowledge.yaml``, each with its vendor source),
with a tracker-domain list (``trackers.json``: a CC BY-SA 4.0 subset of AdGuard's
companiesdb / WhoTracks.me, refreshed by ``refresh_trackers.py``).
The Open Cookie Database CSV can be added at run time as extra knowledge; only its
Analytics and Marketing rows count, because its "Functional" category also holds
essential cookies and is therefore never evidence either way.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from retention_core import ConfigError

from .model import name_matches


@dataclass(frozen=True, slots=True)
class Fact:
    """'Cookie NAME (matched how) belongs to PRODUCT, which does CATEGORY', with its source."""

    name: str
    match: str
    category: str  # "analytics" or "marketing"
    product: str
    vendor: str
    source: str
    storage: str = "cookie"  # "cookie" or "any"

    def matches(self, name: str, storage: str = "cookie") -> bool:
        """Whether an observed or declared *name* in *storage* is this product's."""
        if self.storage != "any" and storage != self.storage:
            return False
        return name_matches(self.match, self.name, name)

    def describe(self) -> str:
        """One line of evidence naming the product and the source of the fact."""
        return f"{self.product} ({self.vendor}) {self.category} cookie, source: {self.source}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """'Requests to ENDPOINT go to PRODUCT', with the source that says so."""

    endpoint: str  # a host, a URL prefix or a /path (see declarations.endpoint_matches)
    category: str
    product: str
    vendor: str
    source: str

    def describe(self) -> str:
        """One line of evidence naming the product and the source of the fact."""
        return f"{self.product} ({self.vendor}) {self.category} endpoint {self.endpoint}, source: {self.source}"


class KnowledgeBase:
    """A list of facts with a lookup by observed or declared name, and known endpoints."""

    def __init__(self, facts: list[Fact], endpoints: list[Endpoint] | None = None,
                 domains: dict[str, Endpoint] | None = None) -> None:
        self.facts = facts
        self.endpoints = endpoints or []
        self.domains = domains or {}  # tracker domain -> what the shipped tracker list says of it

    def endpoint(self, url: str) -> Endpoint | None:
        """The known tracker endpoint *url* goes to: the curated endpoints first (they know
        paths such as a self-hosted /matomo.php), then the tracker list by host and parent domains."""
        from .declarations import endpoint_matches

        curated = next((e for e in self.endpoints if endpoint_matches(e.endpoint, url)), None)
        if curated is not None or not self.domains:
            return curated
        labels = (urlsplit(url).hostname or "").lower().rstrip(".").split(".")
        for i in range(len(labels) - 1):
            hit = self.domains.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        return None

    def lookup(self, name: str, storage: str = "cookie") -> list[Fact]:
        """Every fact about *name*; a pattern declaration is looked up by its literal text."""
        return [fact for fact in self.facts if fact.matches(name, storage)]

    def extended(self, more: list[Fact]) -> KnowledgeBase:
        """A new knowledge base with *more* facts (e.g. from the Open Cookie Database)."""
        return KnowledgeBase(self.facts + more, self.endpoints, self.domains)


@lru_cache(maxsize=1)
def builtin() -> KnowledgeBase:
    """The curated knowledge shipped with the plugin."""
    text = resources.files(__package__).joinpath("knowledge.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    trackers = json.loads(resources.files(__package__).joinpath("trackers.json").read_text(encoding="utf-8"))
    return KnowledgeBase(parse_knowledge(data, "knowledge.yaml"), parse_endpoints(data, "knowledge.yaml"),
                         tracker_domains(trackers))


def tracker_domains(data: dict) -> dict[str, Endpoint]:  # type: ignore[type-arg]
    """The shipped tracker list (``trackers.json``, see refresh_trackers.py) by domain."""
    source = f"{data['source']} ({data['license']}, {data['license_url']})"
    return {domain: Endpoint(domain, category, name, company or "unknown", source)
            for domain, (name, company, category, *_) in data["domains"].items()}


def parse_endpoints(data: dict, file: str) -> list[Endpoint]:  # type: ignore[type-arg]
    """The ``endpoints`` of every product (validated like the names)."""
    out = []
    for i, product in enumerate(data.get("products", [])):
        endpoints = product.get("endpoints", [])
        if not isinstance(endpoints, list) or not all(isinstance(e, str) and e for e in endpoints):
            raise ConfigError("expected a list of hosts, URL prefixes or /paths", file=file,
                              key=f"products[{i}].endpoints")
        out += [Endpoint(e, product["category"], product["product"], product["vendor"], product["source"])
                for e in endpoints]
    return out


def parse_knowledge(data: dict, file: str) -> list[Fact]:  # type: ignore[type-arg]
    """Validate the knowledge file's structure (a broken data file must fail loudly)."""
    facts = []
    for i, product in enumerate(data.get("products", [])):
        where = f"products[{i}]"
        for key in ("product", "vendor", "category", "source", "names"):
            if key not in product:
                raise ConfigError("is required", file=file, key=f"{where}.{key}")
        if product["category"] not in ("analytics", "marketing"):
            raise ConfigError(f"expected analytics or marketing, found {product['category']!r}",
                              file=file, key=f"{where}.category")
        for j, entry in enumerate(product["names"]):
            match = entry.get("match", "exact")
            if match not in ("exact", "prefix", "regex"):
                raise ConfigError(f"expected exact, prefix or regex, found {match!r}",
                                  file=file, key=f"{where}.names[{j}].match")
            facts.append(Fact(name=entry["name"], match=match, category=product["category"],
                              product=product["product"], vendor=product["vendor"],
                              source=product["source"], storage=entry.get("storage", "cookie")))
    return facts


OCD_CATEGORIES = {"Analytics": "analytics", "Marketing": "marketing"}
OCD_COLUMNS = ("ID", "Platform", "Category", "Cookie / Data Key name", "Domain", "Description",
               "Retention period", "Data Controller", "User Privacy & GDPR Rights Portals",
               "Wildcard match")


def read_ocd_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of an Open Cookie Database CSV, after checking its header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in OCD_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"expected Open Cookie Database columns, missing {', '.join(missing)}",
                                  file=str(path), key="header")
            return list(reader)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a readable CSV: {exc}", file=str(path)) from None


def ocd_facts(path: str | Path) -> list[Fact]:
    """Analytics and Marketing rows of the Open Cookie Database as facts."""
    facts = []
    for row in read_ocd_rows(path):
        category = OCD_CATEGORIES.get(row["Category"].strip())
        name = row["Cookie / Data Key name"].strip()
        if not category or not name:
            continue
        facts.append(Fact(name=name, match="prefix" if row["Wildcard match"].strip() == "1" else "exact",
                          category=category, product=row["Platform"].strip() or "unknown",
                          vendor=row["Data Controller"].strip() or "unknown",
                          source=f"Open Cookie Database {row['ID'].strip()}", storage="any"))
    return facts
