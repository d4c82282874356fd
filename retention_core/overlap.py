"""Sources may not overlap by accident.

Two sources that can list the same record defeat holds: a hold scoped to one source (or a
subject that only one source's ``match`` extracts) does not cover the record when the other
source lists it, and the other deletes it. So two sources of one backend whose territories
(:meth:`~retention_core.backend.Backend.territory`) nest are refused, unless the policy says
so on purpose with ``overlaps:``; then holds scoped to either source cover both.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from .errors import ConfigError
from .model import Hold, Source


def check_overlaps(sources: Sequence[Source], territory: Callable[[Source], str | None], file: str) -> None:
    """Raise a ConfigError naming the first two sources that overlap without saying so."""
    seen: list[tuple[Source, str]] = []
    for source in sources:
        where = territory(source)
        if where is None:
            continue
        for other, there in seen:
            if other.backend != source.backend or not (where.startswith(there) or there.startswith(where)):
                continue
            if other.name in source.overlaps or source.name in other.overlaps:
                continue
            raise ConfigError(
                f"sources {other.name!r} and {source.name!r} can list the same records ({there!r} and "
                f"{where!r} overlap): a hold on one would not protect them when the other deletes them. "
                f"Narrow one, or declare it on purpose with `overlaps: [{other.name}]`",
                file=file, key=f"sources[{source.index}]")
        seen.append((source, where))


def spread_holds(holds: Iterable[Hold], sources: Sequence[Source]) -> tuple[Hold, ...]:
    """*holds*, with each hold scoped to a source repeated for every source declared to overlap it.

    A hold scoped to a category is repeated too, for every source overlapping a source of that
    category: there the same records carry the other source's category (red team, issue 16: a
    category hold on the inner source's files did not keep the outer source from deleting
    them). Like a source's hold, the copy holds the whole overlapping source — more than the
    shared records, never less."""
    partners: dict[str, set[str]] = {}
    for source in sources:
        for other in source.overlaps:
            partners.setdefault(source.name, set()).add(other)
            partners.setdefault(other, set()).add(source.name)
    of_category: dict[str, list[str]] = {}
    for source in sources:
        if source.category is not None:
            of_category.setdefault(source.category, []).append(source.name)
    out = []
    for hold in holds:
        out.append(hold)
        for other in sorted(partners.get(hold.scope.source or "", ())):
            out.append(replace(hold, scope=replace(hold.scope, source=other)))
        if hold.scope.category is None:
            continue
        for owner in of_category.get(hold.scope.category, ()):
            if hold.scope.source in (None, owner):
                for other in sorted(partners.get(owner, ())):
                    out.append(replace(hold, scope=replace(hold.scope, source=other, category=None)))
    return tuple(out)


def host_identity(host: str | None, port: int | None = None) -> str:
    """A server's address as territories compare it: one spelling per machine and port, so
    ``localhost`` and ``127.0.0.1`` (or a local socket) are the same server, and a name and its
    addresses are one. Lets backends' :meth:`~retention_core.backend.Backend.territory` catch
    one database or bucket reached through two URLs."""
    name = (host or "").strip("[]").lower()
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(name or "localhost", None)}
    except (OSError, UnicodeError):
        found = {name}
    try:
        if all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in found):
            found = {"loopback"}
    except ValueError:
        pass
    return ",".join(sorted(found)) + (f":{port}" if port is not None else "")
