"""Draft a declarations file from what a site already has: a Klaro or cookieconsent v3
config, or the Open Cookie Database CSV.

These formats say which cookies belong to which service and whether the service is
required, but not *why* a required one is exempt, nor how long its cookies live. So an
import is a draft: required services get ``basis: unreviewed`` (the check fails until a
person picks a WP194 basis), optional ones ``consent: consent-required`` (and the draft
claims ``consent``), and lifetimes the source does not state are written as ``session``
with a comment, so the first real observation shows the truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from retention_core import ConfigError

from .declarations import UNREVIEWED, parse_declarations
from .jsliteral import SKIPPED, JsRegex, JsSyntaxError, find_object
from .knowledge import read_ocd_rows


def import_file(kind: str, path: str | Path, *, domains: Sequence[str] = ()) -> str:
    """The declarations YAML drafted from *path*; validated before it is returned."""
    path = Path(path)
    if kind == "ocd":
        data = from_ocd(read_ocd_rows(path), domains=domains)
    else:
        config = _read_config(path, kind)
        data = from_klaro(config, domains=domains) if kind == "klaro" else from_cookieconsent(config, domains=domains)
    parse_declarations(data, file=f"<import of {path}>")  # an importer must never write an invalid file
    header = (f"# Drafted by `retention cookies import --from {kind} {path.name}`: review before use.\n"
              "# - 'basis: unreviewed' fails the check until you choose a WP194 exemption basis\n"
              "#   and write a justification (docs/cookies.md).\n"
              "# - lifetimes not stated by the source are written as 'session'; the check reports\n"
              "#   the observed expiry if it differs.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# --------------------------------------------------------------------------------------
# Klaro
# --------------------------------------------------------------------------------------


def from_klaro(config: dict[str, Any], *, domains: Sequence[str] = ()) -> dict[str, Any]:
    """Klaro: ``services`` (or the older ``apps``) with ``required``, ``purposes``, ``cookies``."""
    services_raw = config.get("services", config.get("apps"))
    if not isinstance(services_raw, list):
        raise ConfigError("expected a list of services (or apps) in the Klaro config", key="services")
    # Older Klaro versions call the storage option klaroStorage ('cookies'); its default
    # expiry changed between versions, so an absent one is left to the observation.
    storage = config.get("storageMethod", config.get("klaroStorage", "cookie"))
    services = [_consent_service(
        "klaro", str(config.get("cookieName") or config.get("storageName") or "klaro"),
        "cookie" if storage == "cookies" else storage, config.get("cookieExpiresAfterDays"))]
    for i, raw in enumerate(services_raw):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise ConfigError("expected a service with a name", key=f"services[{i}]")
        purposes = [p for p in raw.get("purposes") or [] if isinstance(p, str)]
        required = raw.get("required") is True
        cookies = [_klaro_cookie(c, f"services[{i}].cookies[{j}]")
                   for j, c in enumerate(raw.get("cookies") or [])]
        services.append(_service(raw["name"], required, purposes, cookies,
                                 f"Klaro service {raw.get('title') or raw['name']!r}"
                                 + (f", purposes: {', '.join(purposes)}" if purposes else "")))
    return _document(services, domains, config.get("cookieDomain"))


def _klaro_cookie(raw: Any, where: str) -> dict[str, Any]:
    path = domain = None
    if isinstance(raw, list):
        if not raw:
            raise ConfigError("expected [pattern, path, domain], found an empty list", key=where)
        raw, path, domain = (list(raw) + [None, None])[:3]
    cookie = _name_entry(raw, where)
    if isinstance(domain, str) and domain:
        cookie["domain"] = domain.lstrip(".")
    if isinstance(path, str) and path.startswith("/"):
        cookie["path"] = path
    cookie["lifetime"] = "session"
    return cookie


# --------------------------------------------------------------------------------------
# cookieconsent v3 (orestbida)
# --------------------------------------------------------------------------------------


def from_cookieconsent(config: dict[str, Any], *, domains: Sequence[str] = ()) -> dict[str, Any]:
    """cookieconsent v3: ``categories`` with ``readOnly``, ``autoClear.cookies``, ``services``."""
    categories = config.get("categories")
    if not isinstance(categories, dict) or not categories:
        raise ConfigError("expected a 'categories' mapping in the cookieconsent config", key="categories")
    cookie_cfg: dict[str, Any] = config["cookie"] if isinstance(config.get("cookie"), dict) else {}
    services = [_consent_service("cookieconsent", str(cookie_cfg.get("name") or "cc_cookie"),
                                 "localStorage" if cookie_cfg.get("useLocalStorage") else "cookie",
                                 cookie_cfg.get("expiresAfterDays", 182))]
    for cat_name, cat in categories.items():
        if not isinstance(cat, dict):
            cat = {}
        required = cat.get("readOnly") is True
        claimed: set[str] = set()
        for svc_name, svc in (cat.get("services") or {}).items():
            if not isinstance(svc, dict):
                continue
            cookies = [_cc_cookie(c, f"categories.{cat_name}.services.{svc_name}.cookies[{j}]")
                       for j, c in enumerate(svc.get("cookies") or [])]
            claimed |= {c["name"] for c in cookies}
            label = svc.get("label") if isinstance(svc.get("label"), str) else svc_name
            services.append(_service(f"{cat_name}.{svc_name}", required, [cat_name], cookies,
                                     f"cookieconsent service {label!r} in category {cat_name!r}"))
        auto = ((cat.get("autoClear") or {}).get("cookies") or []) if isinstance(cat.get("autoClear"), dict) else []
        rest = [c for c in (_cc_cookie(c, f"categories.{cat_name}.autoClear.cookies[{j}]")
                            for j, c in enumerate(auto)) if c["name"] not in claimed]
        if rest or not cat.get("services"):
            services.append(_service(cat_name, required, [cat_name], rest,
                                     f"cookieconsent category {cat_name!r}"
                                     + (" (autoClear list)" if rest else "")))
    return _document(services, domains, cookie_cfg.get("domain"))


def _cc_cookie(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ConfigError("expected {name: ..., path?, domain?}", key=where)
    cookie = _name_entry(raw["name"], f"{where}.name")
    if isinstance(raw.get("domain"), str) and raw["domain"]:
        cookie["domain"] = raw["domain"].lstrip(".")
    if isinstance(raw.get("path"), str) and raw["path"].startswith("/"):
        cookie["path"] = raw["path"]
    cookie["lifetime"] = "session"
    return cookie


# --------------------------------------------------------------------------------------
# Open Cookie Database
# --------------------------------------------------------------------------------------

#: The OCD's own categories. "Functional" (and "Necessary", "Security") only hint at
#: necessity and never prove it, so nothing imported from the OCD is strictly necessary.
_OCD_CATEGORY = {"Analytics": "analytics", "Marketing": "marketing"}


def from_ocd(rows: list[dict[str, str]], *, domains: Sequence[str] = ()) -> dict[str, Any]:
    """One service per OCD platform; every cookie with the OCD's stated retention."""
    platforms: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        name = row["Cookie / Data Key name"].strip()
        if not name:
            continue
        category = _OCD_CATEGORY.get(row["Category"].strip(), "functional")
        cookie: dict[str, Any] = {"name": name,
                                  "match": "prefix" if row["Wildcard match"].strip() == "1" else "exact",
                                  "lifetime": _ocd_lifetime(row["Retention period"])}
        description = " ".join(f"{row['Description'].strip()} [OCD {row['ID'].strip()}; category "
                               f"{row['Category'].strip()}; domain {row['Domain'].strip() or '-'}; "
                               f"retention {row['Retention period'].strip() or '-'}]".split())
        cookie["description"] = description
        platform = row["Platform"].strip() or "unknown"
        platforms.setdefault((platform, category), []).append(cookie)
    services = []
    names: set[str] = set()
    for (platform, category), cookies in platforms.items():
        name = platform if platform not in names else f"{platform} ({category})"
        names.add(name)
        services.append({"name": name, "category": category,
                         "description": "Imported from the Open Cookie Database (a catalogue, not proof "
                                        "of necessity)", "cookies": cookies})
    return {"version": 1, "claim": "none", "first_party_domains": list(domains), "services": services}


def _ocd_lifetime(text: str) -> str:
    text = text.strip().lower()
    if not text or "session" in text:
        return "session"
    match = re.search(r"(\d+)\s*(second|minute|min|hour|day|week|month|year)", text)
    if not match:
        return "400d"  # "persistent", "unlimited", …: the most a browser keeps
    n, unit = int(match.group(1)), match.group(2)
    iso = {"second": f"PT{n}S", "minute": f"PT{n}M", "min": f"PT{n}M", "hour": f"PT{n}H",
           "day": f"P{n}D", "week": f"P{n}W", "month": f"P{n}M", "year": f"P{n}Y"}
    return iso[unit]


# --------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------


def _read_config(path: Path, kind: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    try:
        data = json.loads(text)
    except RecursionError:  # json's decoder recurses per level: thousands of [[[[ exhaust the stack
        raise ConfigError(f"not a {kind} config: nested too deeply to read", file=str(path)) from None
    except json.JSONDecodeError:
        anchors = ((r"klaroConfig\s*=", r"export\s+default\s*")
                   if kind == "klaro" else (r"\.run\(\s*", r"Config\s*=", r"export\s+default\s*"))
        try:
            data = find_object(text, anchors)
        except JsSyntaxError as exc:
            raise ConfigError(f"not a {kind} config (JSON, or JS with an object literal): {exc}",
                              file=str(path)) from None
        except RecursionError:
            raise ConfigError(f"not a {kind} config: nested too deeply to read", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected the {kind} config object, found {type(data).__name__}", file=str(path))
    if kind == "klaro" and "klaroConfig" in data and isinstance(data["klaroConfig"], dict):
        data = data["klaroConfig"]
    return data


def _name_entry(raw: Any, where: str) -> dict[str, Any]:
    """A cookie name given as string, '^…' regex string or RegExp → name + match kind."""
    if isinstance(raw, JsRegex):
        return _regex_entry(raw.pattern, raw.flags)
    if isinstance(raw, str) and raw:
        if raw.startswith("^"):
            return _regex_entry(raw, "")
        if len(raw) > 2 and raw.startswith("/") and raw.rfind("/") > 0:  # "/^_ga/i" written as a string
            end = raw.rfind("/")
            return _regex_entry(raw[1:end], raw[end + 1:])
        return {"name": raw, "match": "exact"}
    if raw is SKIPPED:
        raise ConfigError("a cookie name that is an expression, not a literal, cannot be imported", key=where)
    raise ConfigError(f"expected a cookie name or pattern, found {raw!r}", key=where)


def _regex_entry(pattern: str, flags: str) -> dict[str, Any]:
    """JS tests a RegExp anywhere in the name; declarations match the whole name."""
    simple = re.fullmatch(r"\^([\w\-]+)(\.\*)?", pattern)
    if simple and "i" not in flags:
        return {"name": simple.group(1), "match": "prefix"}
    body = pattern.replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!")
    body = body[1:] if body.startswith("^") else ".*" + body
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body + ".*"
    if "i" in flags:
        body = "(?i)" + body
    try:
        re.compile(body)
    except re.error as exc:
        raise ConfigError(f"cannot translate the regular expression /{pattern}/{flags}: {exc}") from None
    return {"name": body, "match": "regex"}


def _service(name: str, required: bool, purposes: list[str], cookies: list[dict[str, Any]],
             origin: str) -> dict[str, Any]:
    service: dict[str, Any] = {"name": name, "description": f"Imported from {origin}."}
    if required:
        service |= {"category": "strictly_necessary", "basis": UNREVIEWED,
                    "justification": f"{origin} is marked required; say why the service cannot work without it."}
    else:
        service |= {"category": _category(purposes), "consent": "consent-required"}
    service["cookies"] = cookies
    return service


def _category(purposes: list[str]) -> str:
    text = " ".join(purposes).lower()
    if re.search(r"analytic|statistic|performance|measure", text):
        return "analytics"
    if re.search(r"marketing|advertis|\bads\b|target|tracking|social", text):
        return "marketing"
    return "functional"


def _consent_service(tool: str, name: str, storage: Any, days: Any) -> dict[str, Any]:
    storage = storage if storage in ("cookie", "localStorage") else "cookie"
    cookie: dict[str, Any] = {"name": name, "storage": storage}
    if storage == "cookie":
        cookie["lifetime"] = f"{int(days)}d" if isinstance(days, (int, float)) and days > 0 else "session"
    return {"name": f"{tool}-consent-record", "category": "strictly_necessary", "basis": "consent_record",
            "justification": f"Stores the visitor's answer to the {tool} consent notice so it is respected.",
            "description": f"The {tool} consent tool's own record of the visitor's choice.",
            "cookies": [cookie]}


def _document(services: list[dict[str, Any]], domains: Sequence[str], cookie_domain: Any) -> dict[str, Any]:
    first_party = list(domains)
    if not first_party and isinstance(cookie_domain, str) and cookie_domain.strip("."):
        first_party = [cookie_domain.strip(".")]
    return {"version": 1, "claim": _claim(services), "first_party_domains": first_party, "services": services}


def _claim(services: list[dict[str, Any]]) -> str:
    """What the source says: optional services (the visitor may accept them) mean the site
    promises consent, not essential cookies only; a draft claiming more could never pass."""
    optional = any(s.get("consent") == "consent-required" for s in services)
    return "consent" if optional else "essential-only"
