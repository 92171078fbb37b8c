#!/usr/bin/env bash
# Here (Debian 12, apt reaching deb.debian.org): makes .studio/ for packaging/device/studio_run.sh,
# what the GPU box lacks to build and run the studio, within the device tool's 64 MiB:
#   .studio/studio-deps.tar.xz  Qt 6.4 (runtime, dev files, xcb platform plugin), Xvfb + xkbcomp +
#                               xkb data, Mesa's DRI driver for Xvfb's GLX with a stand-in
#                               libLLVM-15 (llvm_stub.py: 44 KB instead of 112 MB + libz3), glvnd
#                               loaders and GL headers, fonts, glxinfo, and FFmpeg 5.1 built from
#                               Debian's source with only what the recorder, exporter, readers,
#                               stream outputs and V4L2 input use (+ libx264)
#   .studio/debs/               liblo, imgui, stb (the studio's other build deps), qmake6 (mkspecs)
# Unpacked on the box into /opt/longlive-deps, never into /. Takes ~15 min on two busy cores
# (FFmpeg, xz -9).
#   packaging/device/prepare_studio_carry.sh [OUT_DIR (default .studio)] [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=$(realpath -m "${1:-.studio}")
work=$(realpath -m "${2:-/tmp/studio-carry}")
mkdir -p "$dest/debs" "$work"
cd "$work"

# The runtime and build closure, less what every Linux userland has (libc, libstdc++, zlib,
# compression, crypto, perl/python) and what nothing here uses (Qt's SQL/network modules,
# the other fonts, Xt-based tools).
roots="libqt6core6 libqt6gui6 libqt6widgets6 libqt6opengl6 libqt6openglwidgets6 libqt6test6
  libqt6dbus6 qt6-base-dev qt6-base-dev-tools libqt6opengl6-dev libgl-dev libegl-dev libopengl-dev
  libglx-dev xvfb xkb-data libgl1-mesa-dri fonts-dejavu-core libx264-164"
skip='libc6|libstdc\+\+6|libgcc-s1|gcc-12-base|zlib1g|libzstd1|liblzma5|libbz2-1.0|dpkg|debconf|'\
'cdebconf|perl|perl-base|perl-modules-5.36|libperl5.36|python3.*|libpython3.*|tar|install-info|'\
'lsb-base|sysvinit-utils|mailcap|media-types|mime-support|shared-mime-info|'\
'fonts-(croscore|freefont-otf|freefont-ttf|liberation|liberation2|texgyre|urw-base35)|'\
'ttf-bitstream-vera|libdebian-installer4|libnewt0.52|libslang2|libtextwrap1|readline-common|'\
'libreadline8|libtinfo6|libncursesw6|xorg-sgml-doctools|xfonts-utils|xfonts-encodings|x11-common|'\
'libgdbm.*|libdb5.3|libcrypt1|libselinux1|libacl1|libaudit.*|libcap-ng0|libtirpc.*|libnsl2|'\
'libkrb5.*|libk5crypto3|libgssapi-krb5-2|libcom-err2|libkeyutils1|libssl3|libsqlite3-0|'\
'libgnutls30|libhogweed6|libnettle8|libgmp10|libp11-kit0|libtasn1-6|libidn2-0|libunistring2|'\
'libgcrypt20|libgpg-error0|libsystemd0|libelogind0|libblkid1|libmount1|libuuid1|libcups2|'\
'libavahi.*|libqt6(sql6|network6|printsupport6|concurrent6|xml6)|qmake6|qmake6-bin|libproxy1v5|'\
'libvulkan-dev|libxaw7|libxmu6|libxpm4|libxt6|libsensors-config'
# shellcheck disable=SC2086
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances $roots | grep -v '^[ <]' | sort -u | grep -vxE "$skip" >carry.txt
rm -rf debs stage && mkdir -p debs stage
(cd debs && xargs apt-get download <../carry.txt >/dev/null && apt-get download mesa-utils-bin \
  libx264-dev nasm >/dev/null)
for f in debs/*.deb; do
  case $f in *mesa-utils-bin* | *libx264-dev* | *nasm*) continue ;; esac
  dpkg -x "$f" stage
done
mkdir -p tools && for f in debs/mesa-utils-bin* debs/libx264-* debs/nasm*; do dpkg -x "$f" tools; done
L=stage/usr/lib/x86_64-linux-gnu
cp tools/usr/bin/glxinfo.x86_64-linux-gnu stage/usr/bin/glxinfo

# Mesa's driver without LLVM: the stand-in defines only what the driver imports.
python3 "$here/llvm_stub.py" $L/dri/swrast_dri.so $L/libLLVM-15.so.1 >llvm_stub.s
echo 'LLVM_15 { global: *; };' >llvm_stub.map
rm -f $L/libLLVM-15.so* $L/libz3.so*
gcc -shared -nostdlib -Wl,-soname,libLLVM-15.so.1 -Wl,--version-script=llvm_stub.map \
  -o $L/libLLVM-15.so.1 llvm_stub.s
find $L/dri -name '*.so' ! -name swrast_dri.so -delete
# Docs, static libraries, and the parts of Qt and ICU nothing here loads (other platforms).
rm -rf stage/usr/share/{doc,man,locale,lintian,bug,info,libwacom,apport,doc-base} \
  stage/usr/share/X11/locale $L/libicu{io,test,tu}.* $L/qt6/plugins/{egldeviceintegrations,generic} \
  $L/qt6/plugins/platforms/lib{qeglfs,qlinuxfb,qvnc,qvkkhrdisplay,qminimalegl}.so
find stage -name '*.a' -delete

# FFmpeg 5.1 (Debian 12's source): shared libraries with only the components we use.
mkdir -p apt/lists/partial src
printf 'deb-src http://deb.debian.org/debian bookworm main\ndeb-src http://deb.debian.org/debian-security bookworm-security main\n' >apt/sources.list
o="-o Dir::Etc::SourceList=$work/apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$work/apt/lists"
# shellcheck disable=SC2086
apt-get $o update >/dev/null && (cd src && apt-get $o source --download-only ffmpeg >/dev/null)
(cd src && rm -rf ffmpeg-5.1.* && tar xf ffmpeg_*.orig.tar.xz)
t=$work/tools/usr
sed -i "s#^prefix=/usr#prefix=$t#" $t/lib/x86_64-linux-gnu/pkgconfig/x264.pc
(
  cd src/ffmpeg-5.1.*
  export PATH=$t/bin:$PATH PKG_CONFIG_PATH=$t/lib/x86_64-linux-gnu/pkgconfig
  ./configure --prefix=/opt/studio-deps/ffmpeg --enable-shared --disable-static \
    --disable-programs --disable-doc --disable-everything --disable-autodetect --enable-gpl \
    --enable-libx264 --enable-pic --disable-avfilter --disable-postproc --disable-swresample \
    --enable-encoder=libx264 \
    --enable-decoder=h264,hevc,mpeg4,mpeg2video,vp8,vp9,mjpeg,png,rawvideo,gif \
    --enable-parser=h264,hevc,mpeg4video,mpegvideo,vp8,vp9,mjpeg,png \
    --enable-muxer=mp4,mov,flv,mpegts,matroska,rawvideo \
    --enable-demuxer=mov,matroska,avi,mpegts,flv,image2,rawvideo,h264,hevc,gif \
    --enable-protocol=file,pipe,tcp,udp,rtmp --enable-indev=v4l2 \
    --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,vp9_superframe \
    --enable-zlib --extra-cflags=-I$t/include --extra-ldflags=-L$t/lib/x86_64-linux-gnu >/dev/null
  nice make -j"$(nproc)" >/dev/null
  rm -rf "$work/ffstage" && make install DESTDIR="$work/ffstage" >/dev/null
)
cp -a ffstage/opt/studio-deps/ffmpeg stage/ffmpeg && rm -rf stage/ffmpeg/share

tar -C stage -c . | nice xz -9 -T2 >"$dest/studio-deps.tar.xz"
# qmake6: Qt's CMake files name its binary and take the mkspecs from it.
(cd "$dest/debs" && rm -f ./*.deb && apt-get download libstb-dev libstb0 libimgui-dev liblo-dev \
  liblo7 qmake6 qmake6-bin >/dev/null)
du -sh "$dest"/*
