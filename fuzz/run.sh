#!/usr/bin/env bash
# A longer fuzzing session than CI's: the same property tests (seed corpora in fuzz/corpus,
# random mutations of them, and generated inputs) with many more cases, in release mode.
# cargo-fuzz needs a nightly toolchain, which this project's machines cannot fetch; proptest
# runs on stable and stops by itself after CASES cases per property.
#
#   fuzz/run.sh            # 200,000 cases per property
#   fuzz/run.sh 2000000    # longer
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-200000}"
export PROPTEST_CASES="$CASES"
echo "fuzzing with $CASES cases per property"
# Query parser and canonical key, normalizer, signer: unit-level properties...
cargo test --release --locked --lib -- cache::query normalize::tests normalize::properties auth::sign
# ...and the seed-corpus mutation targets.
cargo test --release --locked --test gateway -- fuzz::
