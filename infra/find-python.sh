#!/usr/bin/env bash
# Prints the path of a working Python 3.12 (the Lambda runtime the template uses).
# Tries python3.12 on PATH, then pyenv's versions, then common locations.
set -u
try() { "$1" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { command -v "$1" 2>/dev/null || echo "$1"; exit 0; }; }
if [ -n "${PYTHON312:-}" ]; then try "$PYTHON312"; fi
command -v python3.12 >/dev/null 2>&1 && try python3.12
for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv /opt/pyenv; do
  [ -n "$root" ] || continue
  for p in "$root"/versions/3.12*/bin/python3.12; do [ -x "$p" ] && try "$p"; done
done
for p in /usr/local/bin/python3.12 /usr/bin/python3.12 /opt/python/3.12/bin/python3.12; do [ -x "$p" ] && try "$p"; done
echo "error: Python 3.12 not found. modelops targets the Lambda python3.12 runtime." >&2
echo "Install it (for example 'pyenv install 3.12', 'apt-get install python3.12', or python.org) or set PYTHON312=/path/to/python3.12." >&2
exit 1
