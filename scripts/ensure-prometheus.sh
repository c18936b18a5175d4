#!/usr/bin/env bash
# The Prometheus tests need Debian's `prometheus` (prometheus + promtool). On a fresh Debian machine
# where we are root, install it; elsewhere say how, or honour an explicit CUTOVER_SKIP_PROMETHEUS=1.
set -u
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then exit 0; fi
if [ "${CUTOVER_SKIP_PROMETHEUS:-}" = "1" ]; then
  echo "ensure-prometheus: CUTOVER_SKIP_PROMETHEUS=1: the Prometheus tests will be skipped" >&2
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-prometheus: installing Debian's prometheus for the tests (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus) >/tmp/cutover-prometheus-install.log 2>&1; then
    # The package may start its own server; the tests start their own on free ports.
    pkill -x prometheus 2>/dev/null || true
    exit 0
  fi
  tail -20 /tmp/cutover-prometheus-install.log >&2
fi
echo "ensure-prometheus: the tests need prometheus and promtool on PATH (Debian: apt-get install prometheus)." >&2
echo "ensure-prometheus: to run everything else, set CUTOVER_SKIP_PROMETHEUS=1." >&2
exit 1
