#!/usr/bin/env bash
# Makes .snap/NAME for a GPU-box run: `git archive HEAD` (uncommitted files never reach the box,
# screenshots and bench results stay behind), plus, when they are here, FlashAttention-3's sources
# as fa3.tar.xz (1 MB instead of .fa3/'s 28 MB) and cudnn-frontend's headers as
# cudnn_frontend.tar.xz (0.3 MB instead of the 12 MB wheel in .whl/): the scripts unpack both, so
# a call carrying .snap/NAME, .debs and .studio builds the studio with FA3 and FP8 attention.
#   packaging/device/make_snapshot.sh NAME      (from the repository root)
set -euo pipefail
name=${1:?usage: make_snapshot.sh NAME}
snap=.snap/$name
rm -rf "$snap"
mkdir -p "$snap"
git archive HEAD -- . ':!docs/*.png' ':!bench/results' | tar -x -C "$snap"
# The commit, for the results (git on the GPU box may see another copy's history).
git rev-parse --short HEAD >"$snap/COMMIT"
[ -d .fa3 ] && tar -cJf "$snap/fa3.tar.xz" .fa3
for whl in .whl/nvidia_cudnn_frontend-*.whl; do
  [ -f "$whl" ] || continue
  tmp=$(mktemp -d)
  python3 -m zipfile -e "$whl" "$tmp"
  tar -cJf "$snap/cudnn_frontend.tar.xz" -C "$tmp" include
  rm -rf "$tmp"
  break
done
echo "$snap: $(du -sh "$snap" | cut -f1), commit $(git rev-parse --short HEAD)"
