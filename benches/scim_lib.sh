# Helpers shared by the SCIM benchmarks; sourced, with WORK (a scratch directory) set by the
# caller, which calls stop_all at exit. Everything binds 127.0.0.1. Processes are recorded in
# $WORK/pids rather than a shell array, because airlock_server runs in a subshell (`< <(...)`).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# The airlock binary to run: AIRLOCK_BIN, to compare builds side by side (default: this tree's).
AIRLOCK_BIN="${AIRLOCK_BIN:-target/release/airlock}"

airlock_server() { # $1 name, $2 store url
  local dir="$WORK/$1"; mkdir -p "$dir"
  printf 'policy = "policy.toml"\n[store]\nurl = "%s"\n[directory]\nkind = "scim"\n[instances.none]\nurl = "http://127.0.0.1:9"\nusername = "x"\npassword = "unused"\nmax_retries = 0\n' "$2" >"$dir/airlock.toml"
  printf '[[grants]]\ngroup = "g"\nroles = ["Viewer"]\n' >"$dir/policy.toml"
  local token; token=$("$AIRLOCK_BIN" --config "$dir/airlock.toml" scim token create --client bench 2>/dev/null)
  local port; port=$(free_port)
  "$AIRLOCK_BIN" --config "$dir/airlock.toml" serve --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
  echo $! >>"$WORK/pids"; wait_port "$port"
  echo "http://127.0.0.1:$port/scim/v2 $token"
}


# Stops every process started through this file or recorded with `echo $! >>"$WORK/pids"`.
stop_all() {
  if [[ -f "$WORK/pids" ]]; then
    while read -r p; do kill "$p" 2>/dev/null || true; done <"$WORK/pids"
  fi
  wait 2>/dev/null || true
}
