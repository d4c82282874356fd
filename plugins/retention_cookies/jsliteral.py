"""Read the object literal of a consent tool's JavaScript config without running it.

Klaro and cookieconsent configs are JS, not JSON: unquoted keys, single quotes, trailing
commas, comments, RegExp literals and callbacks. This reads that near-JSON subset; a
function or any other expression is skipped and becomes :data:`SKIPPED`, so a callback
never stops the import. It does not evaluate anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class JsRegex:
    """A JavaScript RegExp literal (``/^_ga/i``) or ``new RegExp('…')``."""

    pattern: str
    flags: str = ""


class _Skipped:
    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Any = _Skipped()  # a function, identifier or expression that was not read


class JsSyntaxError(ValueError):
    """The text is not the near-JSON object literal this reader understands."""


_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)")


def find_object(text: str, anchors: tuple[str, ...]) -> Any:
    """Parse the first object literal after one of the *anchors* (regexes), or the first
    ``{`` of the text when no anchor is found."""
    start = None
    for anchor in anchors:
        match = re.search(anchor, text)
        if match:
            start = text.find("{", match.end() - 1)
            break
    if start is None:
        start = text.find("{")
    if start < 0:
        raise JsSyntaxError("no object literal found")
    return _Reader(text, start).value()


class _Reader:
    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def error(self, message: str) -> JsSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        return JsSyntaxError(f"line {line}: {message}")

    def skip_space(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch.isspace():
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated comment")
                self.pos = end + 2
            else:
                return

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self) -> Any:
        ch = self.peek()
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.array()
        if ch in "'\"`":
            return self.string()
        if ch == "/":
            return self.regex()
        number = _NUMBER.match(self.text, self.pos)
        if number and ch in "-.0123456789":
            self.pos = number.end()
            raw = number.group()
            return int(raw, 16) if raw.lower().startswith(("0x", "-0x")) else (
                float(raw) if any(c in raw for c in ".eE") else int(raw))
        ident = _IDENT.match(self.text, self.pos)
        if ident:
            word = ident.group()
            after = self.text[ident.end():].lstrip()
            if word in ("true", "false", "null", "undefined") and not after.startswith(("=>", "(", ".")):
                self.pos = ident.end()
                return {"true": True, "false": False}.get(word)
            if word == "new" and re.match(r"new\s+RegExp\s*\(", self.text[self.pos:]):
                self.pos = self.text.index("(", self.pos) + 1
                pattern = self.value()
                flags = ""
                if self.peek() == ",":
                    self.pos += 1
                    flags = self.value()
                if self.peek() != ")":
                    raise self.error("expected ')' after new RegExp(...)")
                self.pos += 1
                if isinstance(pattern, str) and isinstance(flags, str):
                    return JsRegex(pattern, flags)
                return SKIPPED
        self.skip_expression()
        return SKIPPED

    def obj(self) -> dict[str, Any]:
        self.pos += 1  # {
        result: dict[str, Any] = {}
        while True:
            ch = self.peek()
            if ch == "}":
                self.pos += 1
                return result
            if ch == "":
                raise self.error("unterminated object")
            if self.text.startswith("...", self.pos):
                self.skip_expression()
            else:
                key = self.key()
                ch = self.peek()
                if ch == ":":
                    self.pos += 1
                    result[key] = self.value()
                elif ch == "(":  # method shorthand: name(args) { body }
                    self.skip_balanced("(", ")")
                    if self.peek() == "{":
                        self.skip_balanced("{", "}")
                    result[key] = SKIPPED
                elif ch in ",}":  # shorthand property {name}
                    result[key] = SKIPPED
                else:
                    raise self.error(f"expected ':' after key {key!r}")
            ch = self.peek()
            if ch == ",":
                self.pos += 1
            elif ch != "}":
                raise self.error(f"expected ',' or '}}', found {ch!r}")

    def key(self) -> str:
        ch = self.peek()
        if ch in "'\"":
            value = self.string()
            return str(value)
        if ch == "[":
            raise self.error("computed keys are not supported")
        ident = re.compile(r"(?:(?:async|get|set)\s+(?=[\w$]))?([\w$]+)").match(self.text, self.pos)
        if not ident:
            raise self.error(f"expected a key, found {ch!r}")
        self.pos = ident.end()
        return ident.group(1)

    def array(self) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        while True:
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return result
            if ch == "":
                raise self.error("unterminated array")
            result.append(self.value())
            ch = self.peek()
            if ch == ",":
                self.pos += 1
            elif ch != "]":
                raise self.error(f"expected ',' or ']', found {ch!r}")

    def string(self) -> Any:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        template_expr = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                nxt = self.text[self.pos + 1: self.pos + 2]
                if nxt == "u":
                    hexa = self.text[self.pos + 2: self.pos + 6]
                    out.append(chr(int(hexa, 16)))
                    self.pos += 6
                    continue
                out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "0": "\0"}.get(nxt, nxt))
                self.pos += 2
                continue
            if ch == quote:
                self.pos += 1
                return SKIPPED if template_expr else "".join(out)
            if quote == "`" and self.text.startswith("${", self.pos):
                template_expr = True
            if ch == "\n" and quote != "`":
                break
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated string")

    def regex(self) -> JsRegex:
        start = self.pos + 1
        pos, in_class = start, False
        while pos < len(self.text):
            ch = self.text[pos]
            if ch == "\\":
                pos += 2
                continue
            if ch == "[":
                in_class = True
            elif ch == "]":
                in_class = False
            elif ch == "/" and not in_class:
                break
            elif ch == "\n":
                raise self.error("unterminated regular expression")
            pos += 1
        pattern = self.text[start:pos]
        flags = re.compile(r"[a-z]*").match(self.text, pos + 1)
        assert flags is not None
        self.pos = flags.end()
        return JsRegex(pattern, flags.group())

    def _code(self) -> Iterator[str]:
        """Each character outside strings and comments, with ``self.pos`` on it; advances
        past it when the caller asks for the next one (a caller that stops stays on it)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in "'\"`":
                self.string()
                continue
            if self.text.startswith(("//", "/*"), self.pos):
                self.skip_space()
                continue
            yield ch
            self.pos += 1

    def skip_balanced(self, open_: str, close: str) -> None:
        depth = 0
        for ch in self._code():
            if ch == open_:
                depth += 1
            elif ch == close:
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return
        raise self.error(f"unbalanced {open_!r}")

    def skip_expression(self) -> None:
        """Skip a function, arrow function or other expression up to the next ',' ']' '}'."""
        depth = 0
        for ch in self._code():
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                if depth == 0:
                    return
                depth -= 1
            elif ch == "," and depth == 0:
                return
        raise self.error("unexpected end of text")
