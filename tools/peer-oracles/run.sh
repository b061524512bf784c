#!/usr/bin/env bash
# Regenerates the peer-oracle fixtures in __test__/fixtures/peer-oracles/ by running the peers' own
# code (kiez, nnn-retrieval, POT) in one Python 3.11 virtual environment per peer. Not run by CI or
# `npm test` (the fixtures are committed); run it by hand after changing a generator.
#
#   bash tools/peer-oracles/run.sh            # create the venvs if missing, then write the fixtures
#   PEER_ORACLE_VENVS=/tmp/po bash ...        # where the venvs live (default: tools/peer-oracles/.venvs, git-ignored)
#   DBNORM_SHARED=/path/to/shared bash ...    # the shared data folder (default: ../shared beside the repo)
#
# Downloads: kiez + scikit-learn + scipy (~100 MB), POT (~50 MB), torch (the PyPI wheel with its CUDA
# libraries, ~5 GB installed: the CPU-only index is not reachable from this workplace; only the CPU is used).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="${PEER_ORACLE_VENVS:-$here/.venvs}"
py="${PYTHON:-python3.11}"
mkdir -p "$venvs"

# name | pip requirements (versions pinned to what installs here)
peers=(
  "kiez|kiez==0.5.0 numpy<2 scikit-learn<1.6"
  "nnn|nnn-retrieval==1.0.1 torch==2.15.0 numpy<2"
  "pot|POT==0.9.7.post1 numpy<2"
)

make_venv() {
  local name="$1" reqs="$2" dir="$venvs/$1"
  if [ -x "$dir/bin/python" ] && [ -f "$dir/.installed" ]; then return 0; fi
  echo "== creating venv $name: $reqs"
  rm -rf "$dir"
  "$py" -m venv "$dir"
  # torch: try the CPU-only wheel index first (smaller), then PyPI's default wheel
  if [ "$name" = nnn ]; then
    "$dir/bin/pip" install -q torch==2.15.0 --index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
      || echo "   (CPU-only torch index not reachable; installing torch from PyPI)"
  fi
  # shellcheck disable=SC2086
  "$dir/bin/pip" install -q $reqs
  touch "$dir/.installed"
}

for entry in "${peers[@]}"; do
  make_venv "${entry%%|*}" "${entry#*|}"
done

# scikit-hubness 0.21.2 (the peer kiez adapts its reducers from) does not install on Python 3.11:
# its setup.py imports pkg_resources, which the isolated build environment no longer provides.
# Try once per run and record the outcome; nothing depends on it.
skh="$venvs/skhubness"
if [ ! -d "$skh" ]; then "$py" -m venv "$skh"; fi
if "$skh/bin/pip" install -q scikit-hubness==0.21.2 >"$venvs/skhubness.log" 2>&1; then
  echo "note: scikit-hubness installed this time (it did not on 2026-11-29); no oracle uses it yet"
else
  echo "note: scikit-hubness 0.21.2 does not install on $("$py" --version) (log: $venvs/skhubness.log)"
fi

cd "$here"
"$venvs/pot/bin/python" make_inputs.py
"$venvs/kiez/bin/python" oracle_kiez.py
"$venvs/nnn/bin/python" oracle_nnn.py 2> >(grep -v -e '%|' -e 'faiss' >&2)
"$venvs/pot/bin/python" oracle_pot.py
