"""Long fuzz of the decoder, outside CI: mutate real files and count what happens.

Every input must either decode or raise a ``codec.InrcError``; anything else is a crash.  A mutated
file whose CRC was *not* repaired must never decode (an undetected corruption).  Inputs:

* truncations at random offsets, single- and multi-bit flips, random byte overwrites, inserted and
  deleted bytes (CRC left as is: must all be detected);
* random header fields and payload bytes with a *repaired* CRC (must decode or fail cleanly);
* random byte strings, with and without the magic.

    python benchmarks/fuzz_decoder.py --seconds 300 --out benchmarks/results/fuzz.json
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

import codec
from codec import bitstream

LIMIT = 1 << 14


def seeds() -> list[bytes]:
    img = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((40, 30)))
    out = [codec.encode(img, model=m, steps=20, seed=1) for m in ("relu", "pe", "fourier", "siren", "hybrid")]
    out.append(codec.encode(img, model="hybrid", basis="pyramid", quality=95))
    # the wavelet basis (format v10): RGB, gray and RGBA, and a size whose axes are odd
    out.append(codec.encode(img, basis="wavelet", quality=95))
    out.append(codec.encode(img[:, :, 0], basis="wavelet", quality=80))
    out.append(codec.encode(np.dstack([img, img[:, :, :1]]), basis="wavelet", quality=80))
    out.append(codec.encode(img[:29, :37], basis="wavelet", quality=60))
    out.append(codec.encode(img[:, :, 0], basis="pyramid", steps=10))
    out.append(codec.encode(np.dstack([img, img[:, :, :1]]), basis="pyramid", steps=10))
    # older format versions (inrc 0.1 to 0.21), which the decoder still reads, and version-7 to -10
    # files with a post filter (the encoder fits none on an image this small)
    data = Path(__file__).parents[1] / "tests" / "data"
    out += [(data / f"golden_v{v}{m}.inr").read_bytes() for v in (1, 2, 3, 4, 5, 6, 7, 8, 9) for m in ("", "_hybrid")]
    out += [(data / f"golden_v{v}_post.inr").read_bytes() for v in (7, 8, 9, 10)]
    out.append((data / "golden_v10_wavelet_post.inr").read_bytes())
    return out


def fix_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes, bool]:
    """(kind, bytes, must_fail)."""
    b = bytearray(data)
    k = rng.randrange(9)
    if k == 0:
        return "truncate", bytes(b[: rng.randrange(len(b))]), True
    if k == 1:
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(b), True
    if k == 2:
        for _ in range(rng.randint(2, 16)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return "multiflip", bytes(b), bytes(b) != data
    if k == 3:
        i = rng.randrange(len(b))
        b[i] = (b[i] + rng.randrange(1, 256)) % 256
        return "byte", bytes(b), True
    if k == 4:
        i = rng.randrange(len(b) + 1)
        return "insert", bytes(b[:i] + bytes([rng.randrange(256)]) + b[i:]), True
    if k == 5:
        i = rng.randrange(len(b))
        return "delete", bytes(b[:i] + b[i + 1 :]), True
    if k == 6:  # random header fields, CRC repaired
        body = bytearray(b[:-4])
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(3, bitstream.HEADER_SIZE)] = rng.randrange(256)
        return "header+crc", fix_crc(bytes(body)), False
    if k == 7:  # random payload bytes, CRC repaired
        body = bytearray(b[:-4])
        for _ in range(rng.randint(1, 20)):
            body[rng.randrange(bitstream.HEADER_SIZE, len(body))] = rng.randrange(256)
        return "payload+crc", fix_crc(bytes(body)), False
    n = rng.randrange(200)
    raw = bytes(rng.randrange(256) for _ in range(n))
    return "random", (b"INR\x01" + raw if rng.random() < 0.5 else raw), True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    files = seeds()
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    crashes, undetected = [], []
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < args.seconds:
        kind, data, must_fail = mutate(rng, rng.choice(files))
        n += 1
        try:
            img = codec.decode(data, max_pixels=LIMIT)
            codec.info(data)
            counts[kind]["decoded"] += 1
            if must_fail:
                undetected.append((kind, data.hex()))
            if img.width < 1:
                crashes.append((kind, "empty image", data.hex()))
        except codec.InrcError as e:
            counts[kind][type(e).__name__] += 1
        except Exception as e:  # noqa: BLE001 - counting what escapes is the point
            crashes.append((kind, repr(e), data.hex()))
    report = {"inputs": n, "seconds": round(time.perf_counter() - t0, 1), "crashes": len(crashes),
              "undetected_corruptions": len(undetected), "by_kind": {k: dict(v) for k, v in sorted(counts.items())},
              "crash_examples": crashes[:5], "undetected_examples": undetected[:5]}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
