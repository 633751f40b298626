#!/usr/bin/env bash
# Create .venv and install equivision with everything it needs, on a fresh machine.
# - libLLVM >= 16 (Debian/Ubuntu package libllvm19) makes Mitsuba's fast CPU variant available;
#   it is installed with apt when apt exists and we are root, otherwise we say how to get it
#   and the always-available scalar renderer is used.
# - PYTHON picks the interpreter (default python3); EXTRAS the pip extras (default dev,denoise).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-dev,denoise}"

have_llvm() {  # any libLLVM >= 16 where Mitsuba's variant finder looks
  local p
  for p in /usr/lib/*/libLLVM-1[6-9]*.so* /usr/lib/*/libLLVM.so.1[6-9]* /usr/lib/*/libLLVM-2[0-9]*.so* \
           /usr/lib/llvm-1[6-9]/lib/libLLVM*.so* /usr/lib/llvm-2[0-9]/lib/libLLVM*.so*; do
    [ -e "$p" ] && return 0
  done
  return 1
}

if have_llvm || [ -n "${DRJIT_LIBLLVM_PATH:-}" ]; then
  echo "setup: libLLVM >= 16 found (fast llvm_ad_rgb renderer available)"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "setup: installing libllvm19 with apt (Mitsuba's fast CPU renderer)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libllvm19; }; then
    echo "setup: note: could not install libllvm19; the slower scalar_rgb renderer will be used"
  fi
else
  echo "setup: note: no libLLVM >= 16 and no root apt: the scalar_rgb renderer will be used."
  echo "       For the fast CPU renderer: sudo apt-get install -y libllvm19 (or set DRJIT_LIBLLVM_PATH)."
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${EXTRAS}]"
echo "setup: done ($(.venv/bin/python -c 'import torch, mitsuba; print("torch", torch.__version__, "mitsuba", mitsuba.__version__)'))"
