#!/usr/bin/env bash
# Builds and runs every test. Namespace tests need root; with INTNW_REQUIRE_NETNS=1 (set by CI)
# a namespace test that cannot run fails instead of skipping.
set -uo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests || exit 1
rc=0
swift test --skip-build 2>&1 | tee .build/test-output.log || rc=$?
# Whatever a crashed test left behind (namespaces with test prefixes) is reclaimed here.
bash netns-scripts/topology.sh reclaim-tests >/dev/null 2>&1 || true
exit $rc
