#!/usr/bin/env bash
# Installs Debian's graphviz (the `dot` command, for SVG graphs), chromium (for the browser test) and
# postgresql (the server binaries the PostgreSQL store tests start in a temporary directory; the
# package's own cluster service is not used) when they are missing and we are allowed to. Never
# fails the setup: without `dot` the graph views fall back to mermaid and text; without chromium the
# browser test skips and says why; without postgresql the PostgreSQL tests skip and say why.
set -u
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
[ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${missing[*]} missing and apt-get is not available; SVG graphs or the browser test will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "note: ${missing[*]} missing; install with: sudo apt-get install ${missing[*]}" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
for pkg in "${missing[@]}"; do
  echo "installing $pkg..." >&2
  if ! $SUDO apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1; then
    $SUDO apt-get update -q >/dev/null 2>&1 || true
    $SUDO apt-get install -y -q --no-install-recommends "$pkg" >/dev/null 2>&1 \
      || echo "note: could not install $pkg; the features that need it will be skipped" >&2
  fi
done
exit 0
