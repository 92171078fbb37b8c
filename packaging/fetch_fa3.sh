#!/usr/bin/env bash
# Fetches FlashAttention-3's Hopper sources into .fa3/ (git-ignored), for the optional FA3
# attention backend (configure with -DLONGLIVE_FA3_DIR=$PWD/.fa3; sm_90 only). Nothing of FA3 is
# kept in this repository. The flash-attn sdist on PyPI (2.8.3.post2) carries CUTLASS but not
# hopper/'s kernels, so both come from GitHub at the commits pinned here (FA3's own CUTLASS pin).
#   packaging/fetch_fa3.sh [DEST]         (default .fa3 in the repository root)
# FA3_GIT / CUTLASS_GIT may name local clones or mirrors (git directories) instead of GitHub.
set -euo pipefail
fa_commit=0251105a2fb19d2957484b7f023cd8c115286ced       # flash-attention main, 2026-08-15
cutlass_commit=7127592069c2fe01b041e174ba4345ef9b279671  # its csrc/cutlass submodule (4.3)
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.fa3}
mkdir -p "$dest"
fetch() {  # name, commit, git dir or "", GitHub owner/name, path inside the repository
  local name=$1 commit=$2 git=$3 gh=$4 path=$5
  rm -rf "${dest:?}/$name"
  if [ -n "$git" ]; then
    git --git-dir="$git" archive --prefix="$name/" "$commit" "$path" | tar -x -C "$dest"
  else
    local tmp
    tmp=$(mktemp -d)
    curl -fsSL "https://github.com/$gh/archive/$commit.tar.gz" |
      tar -xz -C "$tmp" "${gh#*/}-$commit/$path"
    mkdir -p "$dest/$name/$(dirname "$path")"
    mv "$tmp/${gh#*/}-$commit/$path" "$dest/$name/$path"
    rm -rf "$tmp"
  fi
}
fetch flash-attention "$fa_commit" "${FA3_GIT:-}" Dao-AILab/flash-attention hopper
fetch cutlass "$cutlass_commit" "${CUTLASS_GIT:-}" NVIDIA/cutlass include
# Only the headers and the two .cu files the build compiles are needed.
rm -rf "$dest/flash-attention/hopper/instantiations" "$dest/flash-attention/hopper/flash_attn_3"
rm -f "$dest"/flash-attention/hopper/*.py
printf 'flash-attention %s\ncutlass %s\n' "$fa_commit" "$cutlass_commit" >"$dest/SOURCES"
echo "FA3 sources in $dest ($(du -sh "$dest" | cut -f1)); configure with -DLONGLIVE_FA3_DIR=$dest"
