# Sourced by scripts/run and scripts/test: make sure a virtualenv with crmtasks
# (and the given extras) is installed, re-installing only when setup.cfg or
# setup.py changed. Sets PY to the virtualenv's python.
# Usage: ensure_venv "" | ensure_venv "[dev]"
ensure_venv() {
  local extras="$1"
  local root venv stamp want
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="${CRMTASKS_VENV:-$root/.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtualenv $venv" >&2
    python3 -m venv "$venv"
  fi
  want="$(cat "$root/setup.cfg" "$root/setup.py" | sha256sum | cut -c1-16)"
  stamp="$venv/.crmtasks-installed$extras"
  # An install with the dev extra also satisfies a plain one.
  if ! grep -qx "$want" "$stamp" "$venv/.crmtasks-installed[dev]" 2>/dev/null; then
    echo "installing crmtasks$extras into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -e "$root$extras" >&2
    echo "$want" > "$stamp"
  fi
  PY="$venv/bin/python"
}
