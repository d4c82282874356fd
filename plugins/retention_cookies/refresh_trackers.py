"""Refresh ``trackers.json``, the tracker-domain list shipped with the plugin.

The list is a subset of AdGuard's companiesdb (``dist/trackers.json``, built from the
WhoTracks.me database and kept up to date by AdGuard), licensed CC BY-SA 4.0: only the
categories that need consent (advertising, analytics, social media, telemetry) are kept,
each domain with its tracker's name, company and category, and the licence and source are
written into the file so the notice travels with the data.

    python -m retention_cookies.refresh_trackers            # download the current list
    python -m retention_cookies.refresh_trackers FILE [COMMIT]  # convert a local copy

Run by a maintainer, never at check time: the check must not depend on the network.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

SOURCE_URL = "https://raw.githubusercontent.com/AdguardTeam/companiesdb/main/dist/trackers.json"
REPOSITORY = "https://github.com/AdguardTeam/companiesdb"
LICENSE = "CC-BY-SA-4.0"
LICENSE_URL = "https://creativecommons.org/licenses/by-sa/4.0/"
#: companiesdb categories that need consent, and the plugin's category for each.
KEPT = {"advertising": "marketing", "pornvertising": "marketing", "social_media": "marketing",
        "site_analytics": "analytics", "mobile_analytics": "analytics", "telemetry": "analytics"}
TARGET = Path(__file__).with_name("trackers.json")


def convert(data: dict[str, Any], commit: str = "") -> dict[str, Any]:
    """The shipped subset of a companiesdb ``trackers.json`` document."""
    categories = {str(k): v for k, v in data["categories"].items()}
    trackers = data["trackers"]
    domains: dict[str, list[str]] = {}
    for domain, tracker_id in sorted(data["trackerDomains"].items()):
        tracker = trackers.get(tracker_id) or {}
        kind = categories.get(str(tracker.get("categoryId")), "")
        if kind in KEPT:
            domains[domain.lower()] = [tracker.get("name") or tracker_id, tracker.get("companyId") or "",
                                       KEPT[kind], kind]
    return {
        "source": f"{REPOSITORY} dist/trackers.json" + (f" at {commit}" if commit else ""),
        "updated": data.get("timeUpdated", ""),
        "license": LICENSE,
        "license_url": LICENSE_URL,
        "attribution": "AdGuard companiesdb (https://github.com/AdguardTeam/companiesdb), based on the "
                       "WhoTracks.me database; subset by retention (categories: "
                       f"{', '.join(sorted(KEPT))}). Licensed {LICENSE}, {LICENSE_URL}.",
        "fields": ["tracker", "company", "category", "source category"],
        "domains": domains,
    }


def dump(subset: dict[str, Any]) -> str:
    """JSON with one domain a line, so a refresh reads as a short diff."""
    head = {k: v for k, v in subset.items() if k != "domains"}
    lines = [json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ',\n "domains": {']
    items = [f"  {json.dumps(d)}: {json.dumps(v, ensure_ascii=False)}" for d, v in subset["domains"].items()]
    return "\n".join(lines) + "\n" + ",\n".join(items) + "\n }\n}\n"


def main(argv: list[str]) -> int:
    """Write TARGET from the URL or from a local file given as the first argument."""
    if argv:
        data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    else:
        with urllib.request.urlopen(SOURCE_URL, timeout=60) as response:  # noqa: S310 - a fixed https URL
            data = json.loads(response.read().decode("utf-8"))
    subset = convert(data, argv[1] if len(argv) > 1 else "")
    TARGET.write_text(dump(subset), encoding="utf-8")
    print(f"wrote {TARGET}: {len(subset['domains'])} domains, updated {subset['updated']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
