#!/usr/bin/env bash
# Fetch axe-core (pinned, from the npm registry) for the page's accessibility tests when it is
# missing: its axe.min.js lands in .axe/ (ignored by git; tests/web/test_page_states.py injects
# it into the page under test, never into the page itself). Idempotent: nothing to do when the
# pinned version is already there and intact.
set -euo pipefail
VERSION=4.14.1
SHA1=14d8a6f3f085afd126b8b5ca1e42e50e17fb1d99  # the registry's dist.shasum of the tarball
DIR="$(cd "$(dirname "$0")/.." && pwd)/.axe"
STAMP="$DIR/axe-core-$VERSION.ok"
if [ -f "$STAMP" ] && [ -s "$DIR/axe.min.js" ] \
    && [ "$(sha256sum "$DIR/axe.min.js" | cut -d' ' -f1)" = "$(cat "$STAMP")" ]; then
  exit 0
fi
echo "fetching axe-core $VERSION from the npm registry…"
mkdir -p "$DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TARBALL="$WORK/axe-core-$VERSION.tgz"
if command -v npm >/dev/null; then  # npm's registry and proxy settings
  (cd "$WORK" && npm pack --silent "axe-core@$VERSION" >/dev/null)
else  # no npm on this machine: the same tarball straight from the registry
  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
    "${NPM_REGISTRY:-https://registry.npmjs.org}/axe-core/-/axe-core-$VERSION.tgz" "$TARBALL"
fi
GOT="$(sha1sum "$TARBALL" | cut -d' ' -f1)"
if [ "$GOT" != "$SHA1" ]; then
  echo "ensure-axe: axe-core-$VERSION.tgz has SHA-1 $GOT, expected $SHA1" >&2
  exit 1
fi
tar -xzf "$TARBALL" -C "$WORK" package/axe.min.js package/LICENSE
grep -q "axe v$VERSION" "$WORK/package/axe.min.js" \
  || { echo "ensure-axe: axe.min.js is not axe-core $VERSION" >&2; exit 1; }
rm -f "$DIR"/axe-core-*.ok
cp "$WORK/package/axe.min.js" "$WORK/package/LICENSE" "$DIR/"
sha256sum "$DIR/axe.min.js" | cut -d' ' -f1 > "$STAMP"
echo "axe-core $VERSION in $DIR"
