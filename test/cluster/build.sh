#!/usr/bin/env bash
# Builds the real control plane (kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok)
# from the Go module proxy. Binaries are cached outside the work tree, keyed by version, and the build
# is skipped when the cached binaries already report the wanted versions.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/versions.env"
BIN="${KBATCH_IT_BIN:-$HOME/.cache/kbatch-it/bin-k8s$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION}"
export GOWORK=off CGO_ENABLED=0 GOFLAGS= GOTOOLCHAIN=local
mkdir -p "$BIN"
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }


build_k8s() {
  if [ -x "$BIN/kube-apiserver" ] && "$BIN/kube-apiserver" --version | grep -q "v$K8S_VERSION\$" \
     && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kube-scheduler" ]; then
    log "k8s $K8S_VERSION cached"; return; fi
  local staging="v0.${K8S_VERSION#1.}" mod="$here/gomod/k8s"
  cd "$mod"
  if ! grep -q "k8s.io/kubernetes v$K8S_VERSION" go.mod 2>/dev/null; then
    rm -f go.mod go.sum; go mod init local/kbatch-k8s-bins >/dev/null 2>&1
    local kkmod; kkmod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    for m in $(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*|\1|p' "$kkmod"); do
      go mod edit -replace="$m=$m@$staging"
    done
    for g in $(sed -n 's/^godebug[[:space:]]\{1,\}\([^([:space:]]*\)$/\1/p' "$kkmod"); do go mod edit -godebug="$g"; done
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@v$K8S_VERSION"
    go mod tidy
  fi
  local minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"; local ld="-s -w"
  for kv in "gitVersion=v$K8S_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" "buildDate=2026-01-01T00:00:00Z"; do
    ld="$ld -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  log "building k8s $K8S_VERSION"
  go build -trimpath -tags "selinux,notest,grpcnotrace" -ldflags "$ld" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  "$BIN/kube-apiserver" --version
}

build_etcd() {
  if [ -x "$BIN/etcd" ] && "$BIN/etcd" --version | grep -q "etcd Version: $ETCD_VERSION"; then log "etcd cached"; return; fi
  cd "$here/gomod/etcd"
  if ! grep -q "go.etcd.io/etcd/server/v3 v$ETCD_VERSION" go.mod 2>/dev/null; then
    rm -f go.mod go.sum; go mod init local/kbatch-etcd-bin >/dev/null 2>&1
    go get -tool "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"; go mod tidy
  fi
  log "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  "$BIN/etcd" --version | head -1
}

build_kwok() {
  if [ -x "$BIN/kwok" ] && [ -f "$BIN/kwok.version" ] && [ "$(cat "$BIN/kwok.version")" = "$KWOK_VERSION" ]; then log "kwok cached"; return; fi
  cd "$here/gomod/kwok"
  if ! grep -q "sigs.k8s.io/kwok v$KWOK_VERSION" go.mod 2>/dev/null; then
    rm -f go.mod go.sum; go mod init local/kbatch-kwok-bin >/dev/null 2>&1
    go get -tool "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"; go mod tidy
  fi
  log "building kwok $KWOK_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok
  # The Logs CRD is applied by the start script before kwok runs; kwok does not install CRDs itself.
  local src; src="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  cp "$src/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$BIN/kwok-logs-crd.yaml"
  echo "$KWOK_VERSION" > "$BIN/kwok.version"
}

start=$(date +%s)
build_etcd
build_kwok
build_k8s
log "done in $(( $(date +%s) - start ))s; binaries in $BIN"
echo "$BIN" > "${KBATCH_IT_BIN_FILE:-/dev/null}"
