#!/usr/bin/env bash
# Install nnunet_scribble (plus optional extras, e.g. "test") into the current Python environment.
#
# Usage: bash scripts/install.sh [EXTRAS]      e.g.  bash scripts/install.sh test
#
# Why a script rather than a bare "pip install .": nnunetv2 -> dynamic-network-architectures -> timm -> torchvision
# is unpinned, and pip resolves the newest torchvision, which pins the newest torch; on a machine whose installed
# torch (a CPU build, say) already satisfies our requirement, pip would replace it with a CUDA build plus several GB
# of nvidia packages. We pin torch to the installed version with a constraints file, so pip picks the torchvision
# that matches it. Without an installed torch, $NNUNET_SCRIBBLE_TORCH (default: the tested range below) is used.
# The fix for a CUDA-built torchvision next to a CPU torch is inside the package (nnunet_scribble.pth).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extras="${1:-}"
target="."
[ -n "$extras" ] && target=".[${extras}]"

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if installed="$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)"; then
    echo "install.sh: keeping the installed torch $installed"
    echo "torch==${installed}" > "$constraints"
else
    spec="${NNUNET_SCRIBBLE_TORCH:-torch>=2.1.2,!=2.9.*,<2.14}"
    echo "install.sh: no torch installed; installing ${spec}"
    echo "$spec" > "$constraints"
fi
"$PYTHON" -m pip install --disable-pip-version-check -q -c "$constraints" "$target"
"$PYTHON" -m pip check >/dev/null 2>&1 || echo "install.sh: warning: 'python3 -m pip check' reports dependency conflicts in this environment"
echo "install.sh: installed nnunet_scribble $("$PYTHON" -c 'import nnunet_scribble; print(nnunet_scribble.__version__)') with torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
