#!/usr/bin/env bash
# Debian's Chromium (and coturn) for the end-to-end browser tests (Playwright's own browser download does not
# work offline). Installs only when missing and when we are root; otherwise says what to do.
set -euo pipefail
# Debian's coturn too: the TURN relay test (tests/test_browser_turn.py) starts its own turnserver.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing for the browser tests: install Debian's ${missing[*]} (or set FER_CHROMIUM=/path/to/chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
