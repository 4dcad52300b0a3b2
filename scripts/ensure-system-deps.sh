#!/usr/bin/env bash
# Installs Debian's graphviz (the `dot` command) when it is missing and we are allowed to.
# Never fails the setup: without `dot` the graph views fall back to mermaid and text.
set -u
if command -v dot >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: 'dot' (graphviz) is missing and apt-get is not available; SVG graphs will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "note: 'dot' (graphviz) is missing; install it with: sudo apt-get install graphviz" >&2
    exit 0
  fi
fi
echo "installing graphviz (for SVG graph rendering)..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends graphviz >/dev/null 2>&1; then
  $SUDO apt-get update -q >/dev/null 2>&1 || true
  $SUDO apt-get install -y -q --no-install-recommends graphviz >/dev/null 2>&1 \
    || echo "note: could not install graphviz; SVG graphs will be skipped" >&2
fi
exit 0
