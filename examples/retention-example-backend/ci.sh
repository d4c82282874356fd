#!/usr/bin/env bash
# CI for the example third-party plugin: install it from this folder into the current
# environment (next to an installed retention), run its own tests against the installed
# copy, then drive `retention run` through its entry point (dry-run, then enforce) and
# check what is left on disk, the reports and the audit trail.
#
#   examples/retention-example-backend/ci.sh      (PYTHON=python3.11 to choose the interpreter;
#                                                   RETENTION_EXAMPLE_KEEP=1 keeps it installed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
dist="retention-example-backend"

fail() { echo "ci.sh: FAIL: $*" >&2; exit 1; }
step() { echo "ci.sh: $*"; }

"$py" -c "import retention_core.cli" 2>/dev/null \
    || fail "retention is not importable with $py; install the core first (pip install -e '.[testing]')"

retention() {
    if command -v retention >/dev/null 2>&1; then command retention "$@"
    else "$py" -c 'import sys; from retention_core.cli import main; sys.argv[0] = "retention"; main()' "$@"; fi
}

work="$(mktemp -d)"
cleanup() {
    rm -rf "$work"
    if [ "${RETENTION_EXAMPLE_KEEP:-}" != 1 ]; then "$py" -m pip uninstall --quiet --yes "$dist" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

step "installing $dist from its folder"
cp -r "$here" "$work/src"
rm -rf "$work/src/build" "$work/src"/*.egg-info
# --no-deps: the core is already installed from this repository; never fetch a `retention` from an index.
"$py" -m pip install --quiet --no-deps "$work/src"

step "running the plugin's tests against the installed copy"
rm -rf "$work/src/retention_jsonl"   # so the tests cannot import the source tree by accident
(cd "$work/src" && "$py" -m pytest -q tests)

step "checking the entry point is loaded"
retention plugins --json > "$work/plugins.json"
"$py" - "$work/plugins.json" "$dist" <<'PY'
import json, sys
plugins = {p["name"]: p for p in json.load(open(sys.argv[1]))}
jsonl = plugins.get("jsonl") or sys.exit(f"entry point 'jsonl' not loaded; got {sorted(plugins)}")
assert jsonl["distribution"] == sys.argv[2], jsonl
assert jsonl["provides"].get("backends") == ["jsonl"], jsonl
PY

step "dry-run, then enforce, on the example policy"
cp -r "$here/example" "$work/run"
now="$(date -u +%Y-%m-%dT%H:%M:%S+00:00)"
printf '{"id": "r1", "created": "%s", "subject": "globex", "text": "new ticket"}\n' "$now" \
    > "$work/run/data/support/recent.jsonl"
policy="$work/run/policy.yaml"
retention validate -c "$policy"

before="$(cat "$work/run/data/support/"*.jsonl | sha256sum)"
retention run -c "$policy" --dry-run --report "$work/dry.json"
[ "$before" = "$(cat "$work/run/data/support/"*.jsonl | sha256sum)" ] || fail "the dry-run changed the data"

retention run -c "$policy" --report "$work/run.json"

"$py" - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
dry, run = (json.loads((work / name).read_text()) for name in ("dry.json", "run.json"))
assert dry["dry_run"] and dry["summary"]["delete"] == 3 and dry["summary"]["hold"] == 1, dry["summary"]
assert dry["summary"]["keep"] == 1, dry["summary"]
assert run["outcomes"]["deleted"] == 2 and run["outcomes"]["refused"] == 1, run["outcomes"]
assert run["outcomes"]["failed"] == 0, run["outcomes"]
ids = lambda name: [json.loads(l)["id"] for l in (work / "run/data/support" / name).read_text().splitlines()]
assert ids("2020-01.jsonl") == ["e1", "e4"], ids("2020-01.jsonl")  # held by LH-2026-001; locked in storage
assert ids("recent.jsonl") == ["r1"], ids("recent.jsonl")          # not yet due
PY

retention audit verify -c "$policy"
step "ok"
