#!/usr/bin/env bash
# Installs Debian's headless Chromium for the report-rendering test where that is possible.
# Never fails the build: without a browser the test is skipped and says why.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the report test (apt-get)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed; the report-rendering test will be skipped."
else
  echo "chromium is not installed and apt-get is not usable here; the report-rendering test will be skipped."
fi
exit 0
