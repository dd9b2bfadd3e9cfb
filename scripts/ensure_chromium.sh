#!/usr/bin/env bash
# Chromium (Debian's chromium) for the console's browser test; installs it with apt when it is
# missing and we may (root), otherwise says how. Never fails the caller: without a browser the
# browser test is skipped with this reason.
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    && echo "installed chromium" && exit 0
fi
echo "chromium is not installed (apt-get install chromium): the console's browser test will be skipped" >&2
exit 0
