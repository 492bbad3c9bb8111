#!/usr/bin/env bash
# The chart on a real cluster: kind, the image loaded into it, `helm install --wait`,
# `helm test`, an upgrade that must keep the certificates, then a full stream through
# `kubectl port-forward` with grpcurl and with the bundled client. `make kind-e2e` runs it.
#
# Env: IMAGE (streamer:<appVersion>), KIND_CLUSTER (streamer-e2e), KEEP_CLUSTER=1 to leave
# the cluster running, VALUES (a values file), DOCKER, KIND, UV.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${repo_root}"

chart=deploy/helm/streamer
helm=.local/bin/helm
kubectl=.local/bin/kubectl
kind="${KIND:-kind}"
uv="${UV:-uv}"
image="${IMAGE:?IMAGE=repository:tag of the image to test}"
cluster="${KIND_CLUSTER:-streamer-e2e}"
values="${VALUES:-${chart}/ci/defaults-values.yaml}"
namespace=streamer-e2e
release=streamer
service="${release}-edge"
count=20
work="$(mktemp -d)"
forward_pid=""

log() { printf '\n==> %s\n' "$*" >&2; }

cleanup() {
    if [[ -n "${forward_pid}" ]]; then
        kill "${forward_pid}" 2>/dev/null || true
    fi
    if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
        "${kind}" delete cluster --name "${cluster}" >/dev/null 2>&1 || true
    fi
    rm -rf "${work}"
}
trap cleanup EXIT

dump_state() {
    log "state of ${namespace} after the failure"
    "${kubectl}" --namespace "${namespace}" get all,pvc,secrets -o wide || true
    "${kubectl}" --namespace "${namespace}" describe pods || true
    "${kubectl}" --namespace "${namespace}" logs --all-containers --prefix \
        --selector "app.kubernetes.io/instance=${release}" --tail 200 || true
}
trap 'dump_state' ERR

if ! "${kind}" get clusters 2>/dev/null | grep -qx "${cluster}"; then
    log "creating kind cluster ${cluster}"
    "${kind}" create cluster --name "${cluster}" --wait 180s
fi
"${kubectl}" config use-context "kind-${cluster}" >/dev/null

log "loading ${image} into the cluster"
"${kind}" load docker-image "${image}" --name "${cluster}"

log "helm install ${release} (--wait)"
"${helm}" upgrade --install "${release}" "${chart}" --namespace "${namespace}" --create-namespace \
    --values "${values}" --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
    --set image.pullPolicy=Never --wait --timeout 8m

log "helm test"
"${helm}" test "${release}" --namespace "${namespace}" --logs --timeout 3m

ca_before="$("${kubectl}" --namespace "${namespace}" get secret "${release}-tls" \
    -o jsonpath='{.data.ca\.crt}')"
log "helm upgrade keeps the generated certificates"
"${helm}" upgrade "${release}" "${chart}" --namespace "${namespace}" --reuse-values \
    --set edge.replicaCount=3 --wait --timeout 5m
ca_after="$("${kubectl}" --namespace "${namespace}" get secret "${release}-tls" \
    -o jsonpath='{.data.ca\.crt}')"
if [[ "${ca_before}" != "${ca_after}" ]]; then
    echo "kind-e2e: the upgrade replaced the CA: clients that trusted it would break" >&2
    exit 1
fi

log "port-forward svc/${service} 50051"
"${kubectl}" --namespace "${namespace}" port-forward "svc/${service}" 50051:50051 \
    >"${work}/port-forward.log" 2>&1 &
forward_pid=$!
for _ in $(seq 50); do
    grep -q "Forwarding from" "${work}/port-forward.log" && break
    sleep 0.2
done
printf '%s' "${ca_after}" | base64 -d > "${work}/ca.crt"

log "grpcurl: ${count} chunks to the end marker"
grpcurl -cacert "${work}/ca.crt" -authority "${service}" -max-time 120 \
    -d "{\"id\": \"kind-grpcurl-${RANDOM}${RANDOM}\", \"params\": {\"count\": \"${count}\", \"interval_ms\": \"10\"}}" \
    localhost:50051 stream.Streamer/Stream > "${work}/grpcurl.json"
python3 - "${work}/grpcurl.json" "${count}" <<'PY'
"""grpcurl printed Data 1..count in order, then the end marker (sequence 0, shown as {})."""
import json
import sys

text, count = open(sys.argv[1]).read(), int(sys.argv[2])
decoder, messages, position = json.JSONDecoder(), [], 0
while True:
    while position < len(text) and text[position].isspace():
        position += 1
    if position == len(text):
        break
    message, position = decoder.raw_decode(text, position)
    messages.append(message.get("sequence", 0))
expected = [*range(1, count + 1), 0]
if messages != expected:
    sys.exit(f"grpcurl sequences {messages} != {expected}")
print(f"grpcurl: sequences 1..{count} and the end marker")
PY

log "streamer-client: ${count} chunks to the end marker"
"${uv}" run --frozen streamer-client --target localhost:50051 --ca-file "${work}/ca.crt" \
    --authority "${service}" --id "kind-client-${RANDOM}${RANDOM}" \
    --param "count=${count}" --param interval_ms=10 --timeout 120 > "${work}/client.txt"
received="$(grep -c '^Sequence\[' "${work}/client.txt")"
if [[ "${received}" != "${count}" ]] || [[ "$(tail -n 1 "${work}/client.txt")" != "Stream is over" ]]; then
    echo "kind-e2e: the client printed ${received} of ${count} chunks:" >&2
    cat "${work}/client.txt" >&2
    exit 1
fi
echo "streamer-client: ${count} chunks and the end marker"

log "kind-e2e passed"
