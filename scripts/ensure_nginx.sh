#!/usr/bin/env bash
# nginx (Debian's nginx-light) for the loopback cluster and its tests; installs it with apt
# when it is missing and we may (root), otherwise says how. Never fails the caller.
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null 2>&1 \
    && echo "installed nginx-light" && exit 0
fi
echo "nginx is not installed (apt-get install nginx-light): the cluster tests will be skipped" >&2
exit 0
