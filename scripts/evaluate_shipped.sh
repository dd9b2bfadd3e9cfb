#!/usr/bin/env bash
# Re-measure every shipped meta-learner with the project's own evaluate command and record the
# results in each manifest (the numbers in README.md come from here). Omniglot runs need
# METASERVE_OMNIGLOT_DIR (default ../shared/data/omniglot).
set -euo pipefail
DATA=${METASERVE_OMNIGLOT_DIR:-../shared/data/omniglot}
ms() { metaserve evaluate "$@" --record; }
case "${1:-all}" in
  sinusoid|all)
    ms models/sinusoid-maml --shots 5 --queries 100 --tasks 600 --steps 10
    ms models/sinusoid-maml --shots 5 --queries 100 --tasks 600 --steps 1
    ms models/sinusoid-metasgd --shots 5 --queries 100 --tasks 600 --steps 1
    ms models/sinusoid-hypernet --shots 5 --queries 100 --tasks 600
    ;;&
  omniglot-a|all)
    ms models/omniglot-protonet --ways 5 --shots 1 --tasks 600
    ms models/omniglot-protonet --ways 20 --shots 1 --tasks 600
    ms models/omniglot-protonet --omniglot-runs "$DATA/all_runs.zip"
    ms models/omniglot-anil --ways 5 --shots 1 --tasks 600
    ms models/omniglot-reptile --ways 5 --shots 5 --tasks 600
    ;;&
  omniglot-b|all)
    ms models/omniglot-maml --ways 5 --shots 1 --tasks 600
    ms models/omniglot-maml --ways 20 --shots 1 --tasks 600
    ;;
esac
