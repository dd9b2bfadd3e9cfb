#!/usr/bin/env bash
# Re-measure every shipped meta-learner version with the project's own evaluate command and
# record the results in each manifest (the numbers in README.md come from here). Omniglot runs
# need METASERVE_OMNIGLOT_DIR (default $METASERVE_DATASETS_DIR/omniglot, i.e. ./datasets/omniglot). The task counts below are
# the ones recorded; gradient-based learners at 20-way 5-shot are expensive on a CPU.
set -euo pipefail
DATA=${METASERVE_OMNIGLOT_DIR:-${METASERVE_DATASETS_DIR:-datasets}/omniglot}
ms() { metaserve evaluate "$@" --record; }
case "${1:-all}" in
  sinusoid|all)
    ms models/sinusoid-maml/1.0.0 --shots 5 --queries 100 --tasks 600 --steps 10
    ms models/sinusoid-maml/1.0.0 --shots 5 --queries 100 --tasks 600 --steps 1
    ms models/sinusoid-metasgd/1.0.0 --shots 5 --queries 100 --tasks 600 --steps 1
    ms models/sinusoid-hypernet/1.0.0 --shots 5 --queries 100 --tasks 600
    ms models/sinusoid-neural-process/1.0.0 --shots 5 --queries 100 --tasks 600
    ;;&
  omniglot-a|all)
    for shape in "5 1" "5 5" "20 1" "20 5"; do
      set -- $shape; ms models/omniglot-protonet/1.0.0 --ways "$1" --shots "$2" --tasks 600
    done
    ms models/omniglot-protonet/1.0.0 --omniglot-runs "$DATA/all_runs.zip"
    for shape in "5 1" "5 5" "20 1" "20 5"; do
      set -- $shape; ms models/omniglot-matchingnet/1.0.0 --ways "$1" --shots "$2" --tasks 600
    done
    ms models/omniglot-matchingnet/1.0.0 --omniglot-runs "$DATA/all_runs.zip"
    for shape in "5 1 600" "5 5 600" "20 1 600" "20 5 600"; do
      set -- $shape; ms models/omniglot-anil/1.1.0 --ways "$1" --shots "$2" --tasks "$3"
    done
    for shape in "5 1 300" "5 5 600" "20 1 100" "20 5 60"; do
      set -- $shape; ms models/omniglot-reptile/1.0.0 --ways "$1" --shots "$2" --tasks "$3"
    done
    ;;&
  omniglot-b|all)
    for shape in "5 1 600" "5 5 600" "20 1 600" "20 5 200"; do
      set -- $shape; ms models/omniglot-maml/1.1.0 --ways "$1" --shots "$2" --tasks "$3"
    done
    ;;&
  before|all)
    # version 1.0.0 of MAML and ANIL (the shape-unstable inner-step rule), kept for old IDs
    ms models/omniglot-maml/1.0.0 --ways 5 --shots 5 --tasks 100
    ms models/omniglot-maml/1.0.0 --ways 20 --shots 5 --tasks 100
    ms models/omniglot-anil/1.0.0 --ways 5 --shots 5 --tasks 200
    ms models/omniglot-anil/1.0.0 --ways 20 --shots 5 --tasks 200
    ;;
esac
