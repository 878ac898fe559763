#!/usr/bin/env bash
# Removes what signet's own test suites left on the local RabbitMQ and NATS: queues,
# exchanges and streams of test namespaces (t<32 hex>, v<32 hex>, e2e<16 hex>,
# load<12 hex>) that a failed or killed test did not delete. Every quorum queue holds
# files open, and RabbitMQ stops accepting connections once its file handles run out
# (seen here with ~300 leftover queues at the default limit of 1024), so leftovers of
# earlier runs must not accumulate. Touches nothing else; does nothing when a broker is
# not running. Usage: scripts/sweep-test-brokers.sh
set -uo pipefail

TEST_NS='(t[0-9a-f]{32}|v[0-9a-f]{32}|e2e[0-9a-f]{16}|load[0-9a-f]{12})'
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

if listening 5672 && command -v rabbitmqctl >/dev/null 2>&1; then
  # One eval instead of a CLI call per object: rabbitmqctl takes seconds to start.
  out=$(as_root timeout 120 rabbitmqctl -q eval "
    Ns = <<\"-${TEST_NS}\$\">>,
    Qs = [Q || Q <- rabbit_amqqueue:list(<<\"/\">>),
               begin {resource, _, queue, N} = amqqueue:get_name(Q),
                     re:run(N, <<\"^signet\\\\.\">>) =/= nomatch andalso re:run(N, Ns) =/= nomatch end],
    [catch rabbit_amqqueue:delete(Q, false, false, <<\"signet-test-sweep\">>) || Q <- Qs],
    Xs = [element(2, X) || X <- rabbit_exchange:list(<<\"/\">>),
               begin {resource, _, exchange, N} = element(2, X),
                     re:run(N, <<\"^signet\\\\.\">>) =/= nomatch andalso re:run(N, Ns) =/= nomatch end],
    [catch rabbit_exchange:delete(X, false, <<\"signet-test-sweep\">>) || X <- Xs],
    io_lib:format(\"~b queues, ~b exchanges\", [length(Qs), length(Xs)]).
  " 2>&1) && echo "==> swept RabbitMQ test leftovers: ${out//\"/}" \
    || echo "==> could not sweep RabbitMQ test leftovers (continuing): $out"
fi

if listening 4222 && command -v python3 >/dev/null 2>&1; then
  TEST_NS="$TEST_NS" timeout 60 python3 - <<'PY' || echo "==> could not sweep NATS test leftovers (continuing)"
import json, os, re, socket
# The JetStream API is plain NATS request/reply; no client library needed for two calls.
pattern = re.compile(r"^SIGNET_[A-Z_]+-" + os.environ["TEST_NS"] + "$")
s = socket.create_connection(("127.0.0.1", 4222), timeout=10)
f = s.makefile("rb")
f.readline()  # INFO
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.signet-sweep 1\r\n')
def request(subject, body=b"{}"):
    s.sendall(b"PUB %s _INBOX.signet-sweep %d\r\n%s\r\n" % (subject.encode(), len(body), body))
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("NATS closed the connection")
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"MSG"):
            data = f.read(int(line.split()[-1]))
            f.readline()
            return json.loads(data)
names = []
while True:
    page = request("$JS.API.STREAM.NAMES", json.dumps({"offset": len(names)}).encode())
    got = page.get("streams") or []
    names += got
    if not got or len(names) >= page.get("total", 0):
        break
stale = [n for n in names if pattern.match(n)]
for n in stale:
    request("$JS.API.STREAM.DELETE." + n)
print(f"==> swept NATS test leftovers: {len(stale)} streams")
PY
fi
exit 0
