# Sourced by scripts/demo.sh and scripts/demo-cluster.sh: headings, the command echo, and the probe
# table. Expects $weir (the CLI) and the array `flows` ("from to port/PROTO" lines); a script may
# define where() (given from and to, prints a column such as the pods' nodes) before probe_all.
bold=$(tput bold 2>/dev/null || true) norm=$(tput sgr0 2>/dev/null || true)
green=$(tput setaf 2 2>/dev/null || true) red=$(tput setaf 1 2>/dev/null || true)
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$norm"; }
run() { printf '%s$ weir %s%s\n' "$bold" "$*" "$norm"; $weir "$@"; }

# Real connections from inside the pods, one line each: ALLOWED or DENIED.
probe_all() {
  for f in "${flows[@]}"; do
    read -r from to port <<<"$f"
    local extra=''
    if declare -F where >/dev/null; then extra=$(printf '%-15s ' "($(where "$from" "$to"))"); fi
    if $weir lab probe --from "$from" --to "$to" --port "$port" --timeout 700 >/dev/null 2>&1; then
      printf '  %-14s -> %-14s %-9s %s%sALLOWED%s\n' "$from" "$to" "$port" "$extra" "$green" "$norm"
    else
      printf '  %-14s -> %-14s %-9s %s%sDENIED%s\n' "$from" "$to" "$port" "$extra" "$red" "$norm"
    fi
  done
}
