#!/bin/sh
# Build the test control plane's binaries from the pinned wrapper modules in e2e/bins/.
#
# Each component lands in .cache/bin/<component>-<version>/ together with a stamp
# holding the hash of its go.mod, go.sum and this script; a component is rebuilt only when that
# hash changes (a new pin). Go's own build and module caches (GOCACHE, GOMODCACHE)
# stay at their defaults outside the repository, so later builds on the same machine
# reuse the compiled packages.
#
# usage: build.sh [component ...]   (default: etcd kubernetes kwok helm coredns trainer jobset training-operator mpi-operator kueue argocd-lua)
set -eu
bins=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$bins/../.." && pwd)
cache="$root/.cache/bin"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

fail() { echo "cluster-bins: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 ||
    fail "no Go toolchain on PATH; install Go >= 1.26 (https://go.dev/dl) and re-run make cluster-bins"

# The version a wrapper module pins for its main requirement.
pinned() { sed -n "s|^[[:space:]]*$2 \(v[^ ]*\).*|\1|p" "$bins/$1/go.mod" | head -n 1; }

# A component is rebuilt when its pins (go.mod, go.sum) or this script (flags) change.
fingerprint() { cat "$bins/$1/go.mod" "$bins/$1/go.sum" "$bins/build.sh" | sha256sum | cut -d' ' -f1; }

ldflags_for() {
    case $1 in
    kubernetes)
        v=$2; minor=${v#v1.}; minor=${minor%%.*}
        info=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p')
        released=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
        pkg=k8s.io/component-base/version
        printf '%s' "-s -w -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
            " -X $pkg.gitTreeState=clean -X $pkg.buildDate=$released"
        ;;
    etcd) printf '%s' "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$2" ;;
    kwok) printf '%s' "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${2#v}" ;;
    jobset | kueue) printf '%s' "-s -w -X sigs.k8s.io/$1/pkg/version.GitVersion=$2" ;;
    mpi-operator) printf '%s' "-s -w -X github.com/kubeflow/mpi-operator/pkg/version.Version=$2" ;;
    trainer | training-operator | argocd-lua) printf '%s' "-s -w" ;;
    helm)
        # `helm version`, and the Kubernetes version helm template and lint assume: that of its client-go
        client=$(sed -n 's|^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$bins/helm/go.mod")
        [ -n "$client" ] || fail "$bins/helm/go.mod does not require k8s.io/client-go"
        printf '%s' "-s -w -X helm.sh/helm/v3/internal/version.version=$2" \
            " -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
            " -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$client" \
            " -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$client"
        ;;
    esac
}

build() {
    component=$1
    case $component in
    kubernetes) module=k8s.io/kubernetes ;;
    etcd) module=go.etcd.io/etcd/server/v3 ;;
    kwok) module=sigs.k8s.io/kwok ;;
    helm) module=helm.sh/helm/v3 ;;
    coredns) module=github.com/coredns/coredns ;; # the real node's DNS; its wrapper holds the main package
    # the controllers the cluster tests run beside the control plane
    trainer) module=github.com/kubeflow/trainer/v2 ;;
    jobset) module=sigs.k8s.io/jobset ;;
    training-operator) module=github.com/kubeflow/training-operator ;;
    mpi-operator) module=github.com/kubeflow/mpi-operator ;;
    kueue) module=sigs.k8s.io/kueue ;;
    # ArgoCD's health-check Lua engine; its wrapper holds the main package
    argocd-lua) module=github.com/argoproj/argo-cd/v3 ;;
    *) fail "unknown component '$component' (known: etcd kubernetes kwok helm coredns trainer jobset training-operator mpi-operator kueue argocd-lua)" ;;
    esac
    version=$(pinned "$component" "$module")
    [ -n "$version" ] || fail "$bins/$component/go.mod does not require $module"
    out="$cache/$component-$version"
    stamp="$out/.stamp"
    want=$(fingerprint "$component")
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "cluster-bins: $component $version is up to date in ${out#"$root"/}"
        return
    fi
    echo "cluster-bins: building $component $version into ${out#"$root"/} (the first build takes a while)"
    cd "$bins/$component"
    echo "cluster-bins:   downloading modules from ${GOPROXY:-$(go env GOPROXY)}"
    go mod download ||
        fail "cannot download the modules of $component $version; is the Go module proxy ($(go env GOPROXY)) reachable?"
    tools=$(awk '/^tool \(/ { inside = 1; next } inside && /^\)/ { inside = 0 }
                 inside { print $1 } /^tool [^(]/ { print $2 }' go.mod | tr '\n' ' ')
    [ -n "$tools" ] || tools=.  # a wrapper with no tool block is itself the main package
    rm -rf "$out.tmp" && mkdir -p "$out.tmp"
    start=$(date +%s)
    echo "cluster-bins:   compiling $tools"
    # shellcheck disable=SC2086  # $tools is a list of package paths
    go build -trimpath -ldflags "$(ldflags_for "$component" "$version")" -o "$out.tmp/" $tools
    # go names the binary of go.etcd.io/etcd/server/v3 after its parent directory
    [ "$component" != etcd ] || mv "$out.tmp/server" "$out.tmp/etcd"
    echo "$want" > "$out.tmp/.stamp"
    rm -rf "$out" && mv "$out.tmp" "$out"
    echo "cluster-bins:   $component $version built in $(( $(date +%s) - start ))s"
}

[ $# -gt 0 ] || set -- etcd kubernetes kwok helm coredns trainer jobset training-operator mpi-operator kueue argocd-lua
mkdir -p "$cache"
# One build at a time per checkout: a second `make cluster-bins` waits, then finds the binaries built.
exec 9>"$cache/.lock"
flock 9
for component in "$@"; do
    build "$component"
done
