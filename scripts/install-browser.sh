#!/usr/bin/env bash
# Debian's Chromium for the end-to-end browser tests (Playwright's own browser download does not
# work offline). Installs only when missing and when we are root; otherwise says what to do.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing: install Debian's 'chromium' package (or set FER_CHROMIUM=/path/to/chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
