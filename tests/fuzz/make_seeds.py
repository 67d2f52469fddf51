#!/usr/bin/env python3
"""make_seeds.py — writes the seed corpora tests/fuzz/corpus/<target>/ (standard library only): small valid
inputs, some taken from the fixtures, some made with the writers of tests/bad-inputs/make_cases.py, and
`regress-*`: inputs that once crashed a target (those with a bad-inputs case written here, those a fuzzer
found kept as they are). Run after make_cases.py:
    python3 tests/fuzz/make_seeds.py
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "bad-inputs"))
import make_cases as mc  # noqa: E402


def fixture(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def write(target, name, body):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(body.encode() if isinstance(body, str) else body)


def main():
    for top, _, files in os.walk(os.path.join(HERE, "corpus")):
        for name in files:
            if not name.startswith("regress-"):
                os.remove(os.path.join(top, name))

    write("safetensors", "tiny-model", mc.safetensors(mc.model_tensors()))
    write("safetensors", "metadata", mc.safetensors([("a", "F32", [2, 1], b"\0" * 8), ("b", "U8", [0], b"")],
                                                    metadata={"format": "pt"}))
    write("safetensors", "all-dtypes", mc.safetensors(
        [(d, d, [2], b"\0" * 2 * s) for d, s in [("BOOL", 1), ("I8", 1), ("U16", 2), ("I16", 2), ("U32", 4),
                                                ("I32", 4), ("U64", 8), ("I64", 8), ("F16", 2), ("F64", 8),
                                                ("F8_E5M2", 1), ("F8_E8M0", 1)]]))

    write("index", "two-shards", json.dumps({"metadata": {"total_size": 4}, "weight_map": {"x": "a.safetensors",
                                                                                        "y": "b.safetensors"}}))
    write("index", "one-shard", json.dumps({"weight_map": {"y": "b.safetensors"}}))

    for name, rel in [("tiny-kjv-nvfp4", "tests/data/tiny-kjv/nvfp4/config.json"),
                      ("tiny-kjv-bf16", "tests/data/tiny-kjv/bf16/config.json")]:
        write("config", name, fixture(rel))
    write("config", "causal-lm", mc.config())
    write("config", "old-rope", mc.config(rope_theta=None, rope_scaling={"type": "default", "rope_theta": 1e6},
                                          quantization_config=None))

    write("tekken", "v11-image", json.dumps(mc.tekken(image={"image_patch_size": 14, "max_image_size": 1024,
                                                              "spatial_merge_size": 2})))
    legacy = mc.tekken(version="v7", specials=None)
    legacy["multimodal"] = {"image_patch_size": 16, "max_image_size": 512}
    write("tekken", "v7-legacy", json.dumps(legacy))

    for i, s in enumerate(json.loads(fixture("tests/data/tokenizer/strings.json"))):
        if s:
            write("tokenizer", "s%02d" % i, s)
    write("tokenizer", "ill-formed", b"ok \xc3\x28 \xe2\x82 \xf0\x9f\x98 \xed\xa0\x80 \xff end")

    for name in ["small.png", "alpha.png", "photo.jpg"]:
        write("image", name, fixture("tests/data/tiny-a/images/" + name))
    write("image", "grey.png", mc.png(5, 3, color_type=0))
    write("image", "grey-alpha.png", mc.png(3, 4, color_type=4))
    write("image", "rgba.png", mc.png(4, 4, color_type=6))
    write("image", "wide.png", mc.png(60, 2))
    write("image", "rgb.bmp", mc.bmp(5, 3))
    write("image", "one.gif", mc.GIF_1X1)
    write("image", "lzw.gif", mc.gif(16, 16))
    grey = mc.png(5, 3, color_type=0)  # an empty IDAT chunk first: stb_image memcpy'd to a null buffer
    write("image", "regress-png-empty-idat", grey[:33] + b"\0\0\0\0IDAT" + struct.pack(">I", 0x35af061e) + grey[33:])
    write("image", "regress-jpeg-huffman", open(os.path.join(mc.HERE, "img-jpeg-huffman.jpg"), "rb").read())
    # EXIF orientation 6 (rotate 90° clockwise): an APP1 segment after a JPEG's SOI, an eXIf chunk after IHDR.
    tiff = b"MM\0\x2a\0\0\0\x08\0\x01" + struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\0\0\0\0"
    jpeg = fixture("tests/data/tiny-a/images/photo.jpg")
    write("image", "exif-6.jpg", jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(tiff) + 8) + b"Exif\0\0" + tiff + jpeg[2:])
    wide = mc.png(60, 2)
    write("image", "exif-6.png", wide[:33] + struct.pack(">I", len(tiff)) + b"eXIf" + tiff + b"\0\0\0\0" + wide[33:])
    write("image", "lossy.webp", mc.WEBP_16X16)
    vp8 = mc.WEBP_16X16[12:]  # its VP8 chunk, after the RIFF header
    exif = b"EXIF" + struct.pack("<I", len(tiff)) + tiff
    write("image", "exif-6.webp", mc.webp_vp8x(16, 16, 0x08, vp8 + exif))  # flag 0x08: an EXIF chunk

    for i, line in enumerate(["/image cat.png", "/image \"my cat.png\"  ", "//not a command", "  hello there \\",
                              "/save 'chat.json'", "/tool-result {\"ok\": true}", "/exit",
                              json.dumps([{"type": "function", "function": {"name": "get_weather", "description": "d",
                                          "parameters": {"type": "object", "properties": {}}}}]),
                              json.dumps({"tools": [{"name": "f"}]}),
                              "You are {name}, today is {today} ({yesterday} was yesterday). {{literal}}"]):
        write("chat_input", "line%02d" % i, line)

    write("kld", "small", mc.kld(4, 3, 1))
    write("kld", "two-chunks", mc.kld(8, 10, 2))
    write("kld", "even-vocab", mc.kld(5, 4, 1))
    write("kld", "regress-overflow", open(os.path.join(mc.HERE, "kld-overflow.dat"), "rb").read())

    def prompt_cache(kv_type, elem, n_layer, ids, width, images=()):
        """A chat --prompt-cache file (common/prompt_cache.h): fp4::Type code, element bytes, layers, ids,
        (first, count, digest) per image."""
        kv = bytes((i * 7 + 3) & 0x7f for i in range(2 * n_layer * len(ids) * width * elem))
        body = (struct.pack("<%di" % len(ids), *ids) + b"".join(struct.pack("<IIQ", *im) for im in images) + kv)
        h = 0xcbf29ce484222325
        for b in body:
            h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
        return (b"FP4PCACH" + struct.pack("<IIIIIQQ", 2, kv_type, n_layer, len(ids), len(images), width * elem, h) +
                body)

    write("prompt_cache", "f32", prompt_cache(0, 4, 2, [1, 3, 5], 8))
    write("prompt_cache", "bf16", prompt_cache(2, 2, 1, [1, 3, 10, 10, 13, 4], 16, [(2, 3, 0x0123456789abcdef)]))
    write("prompt_cache", "fp8", prompt_cache(3, 1, 3, [1], 32))
    print("seeds written")


if __name__ == "__main__":
    main()
