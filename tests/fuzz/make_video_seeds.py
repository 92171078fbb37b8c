"""Writes small hand-made seeds of fuzz_video_reader (tests/fuzz/corpus/video_reader): a
YUV4MPEG2 video (3 frames, 16x8, 4:2:0), a greyscale PGM and a 24-bit BMP image. The H.264 MP4
seed is a recording of our own (`longlive generate --random tiny --blocks 1 --output tiny.mp4
--height 32 --width 32`), the format the studio records and users feed back as control video.
Run: python3 tests/fuzz/make_video_seeds.py"""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "video_reader")
os.makedirs(out, exist_ok=True)


def y4m(name, width, height, frames):
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"YUV4MPEG2 W%d H%d F16:1 Ip A1:1 C420jpeg\n" % (width, height))
        for i in range(frames):
            f.write(b"FRAME\n")
            f.write(bytes((x * 8 + i * 40) % 256 for x in range(width * height)))  # Y ramp
            f.write(bytes([96 + 16 * i]) * (width * height // 4))  # U
            f.write(bytes([160 - 16 * i]) * (width * height // 4))  # V


def pgm(name, width, height):
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (width, height))
        f.write(bytes((x * 255 // (width * height - 1)) for x in range(width * height)))


def bmp(name, width, height):
    row = (width * 3 + 3) & ~3
    pixels = bytearray()
    for y in range(height):
        line = bytearray()
        for x in range(width):
            line += bytes([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128])
        pixels += line + bytes(row - len(line))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    with open(os.path.join(out, name), "wb") as f:
        f.write(header + info + pixels)


y4m("ramp_16x8_3frames.y4m", 16, 8, 3)
pgm("ramp_8x6.pgm", 8, 6)
bmp("gradient_6x4.bmp", 6, 4)
