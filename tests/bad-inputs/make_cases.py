#!/usr/bin/env python3
"""make_cases.py — writes the tests/bad-inputs corpus (standard library only): one small broken input per
case and cases.json (command, exit code, expected error) for tests/test_bad_inputs.cpp; with --readme, the
README table of what each case prints. Also the writers the fuzz seeds reuse (tests/fuzz/make_seeds.py).
    python3 tests/bad-inputs/make_cases.py [--readme build/bin]
"""
import json
import os
import shutil
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
KJV = "tests/data/tiny-kjv/nvfp4"
KJV_TEKKEN = os.path.join(os.path.dirname(HERE), "data", "tiny-kjv", "nvfp4", "tekken.json")

# ---- writers ----


def safetensors(tensors, metadata=None, header=None, hlen=None):
    """tensors: [(name, dtype, shape, bytes)] laid out in order. `header` replaces the JSON text, `hlen`
    the length field."""
    h, data = {}, b""
    if metadata is not None:
        h["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = (header if header is not None else json.dumps(h, separators=(",", ":"))).encode()
    return struct.pack("<Q", len(text) if hlen is None else hlen) + text + data


def png(w, h, color_type=2, rows=None, ihdr=None, cut=None):
    """A PNG of w×h 8-bit pixels (colour type 0 grey, 2 RGB, 6 RGBA); `ihdr` overrides the header
    dimensions, `cut` truncates the file."""
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    if rows is None:
        rows = [bytes((x * 37 + y * 11 + c * 5) & 255 for x in range(w) for c in range(ch)) for y in range(h)]
    raw = b"".join(b"\x00" + r for r in rows)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    iw, ih = ihdr or (w, h)
    out = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", iw, ih, 8, color_type, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return out if cut is None else out[:cut]


def bmp(w, h):
    """A 24-bit BMP."""
    stride = (3 * w + 3) & ~3
    px = b"".join(bytes((x * 40 + y * 3) & 255 for x in range(w) for _ in range(3)).ljust(stride, b"\0")
                  for y in range(h))
    return (b"BM" + struct.pack("<IHHI", 54 + len(px), 0, 0, 54) +
            struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(px), 2835, 2835, 0, 0) + px)


def gif(w, h):
    """A GIF89a of w×h pixels of palette colour 1, LZW-coded with 3-bit codes: a clear code before every
    two pixels keeps the code table (and so the code width) from growing."""
    codes = [4, 1, 1] * (w * h // 2) + [5]
    bits = nbits = 0
    lzw = bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += 3
        while nbits >= 8:
            lzw.append(bits & 255)
            bits >>= 8
            nbits -= 8
    if nbits:
        lzw.append(bits)
    blocks = b"".join(bytes([len(lzw[i:i + 255])]) + lzw[i:i + 255] for i in range(0, len(lzw), 255)) + b"\0"
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + bytes([0, 0, 0, 255, 0, 0]) +
            b"," + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\2" + blocks + b";")


def png_bomb(w, h, inflated):
    """A w×h RGB PNG whose image data inflates to `inflated` zero bytes."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(bytes(inflated), 9)) + chunk(b"IEND", b""))


# A 1×1 GIF89a (one black pixel): header, palette, image descriptor, LZW data, trailer.
GIF_1X1 = bytes.fromhex("4749463839610100010080000000000000ffffff2c00000000010001000002024401003b")
# A 16×16 lossy WebP (libwebp 1.2.4, quality 50, of a gradient).
WEBP_16X16 = bytes.fromhex(
    "52494646d80000005745425056503820cc000000b003009d012a1000100002c04c25004e993fc5dbb6ffb251253cf8bef96f"
    "d144d29c96838f4000fe27abfe440cf5eed7e9aae61deff39f83c8655f445fe3f552c17185a7a4a92f5b6afb551ac2c72e81"
    "cd377ef3029febcf763fecf2cabfe291c704a05ca60bc28ddc31b2e5ba9b3a5f5917a2dafd816b3674dded1c78dd2f23e684"
    "d82c8da5f669bf279e4eb65beffe4173571f9b304e2988b8e7b63631c953b5f760ffebb10696b2808bf1c1f572fe589654fd"
    "5c90705527efa376353038e63b560e7f447865d09c000000")


def webp_vp8x(w, h, flags, chunks=b""):
    """A WebP in the extended layout: a VP8X header (flags, canvas w×h), then the given chunks."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (
        h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body

LEGACY_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                   "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
                   "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                   "[TOOL_CONTENT]"]
TEKKEN_PATTERN = json.load(open(KJV_TEKKEN))["config"]["pattern"]


def tekken(merges=(b"th", b"he", b"the", b" t"), version="v11", specials=LEGACY_SPECIALS, n_special=20,
           pattern=TEKKEN_PATTERN, image=None):
    """A small valid tekken.json as a dict: the 256 bytes, then `merges`."""
    import base64
    tokens = [bytes([b]) for b in range(256)] + list(merges)
    vocab = [{"rank": r, "token_bytes": base64.b64encode(t).decode()} for r, t in enumerate(tokens)]
    j = {"config": {"pattern": pattern, "num_vocab_tokens": len(tokens), "default_vocab_size": n_special + len(tokens),
                    "default_num_special_tokens": n_special, "version": version},
         "vocab": vocab}
    if specials is not None:
        j["special_tokens"] = [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(specials)]
    if image is not None:
        j["image"] = image
    return j


def kld(n_ctx, n_vocab, n_chunk, tokens=None, extra=b"", raw_fields=None):
    """A llama.cpp `_logits_` file with all-zero rows."""
    rows = n_ctx - 1 - n_ctx // 2
    slots = 2 * ((n_vocab + 1) // 2) + 4
    tokens = tokens if tokens is not None else [i % n_vocab for i in range(n_ctx * n_chunk)]
    head = b"_logits_" + struct.pack("<iii", *(raw_fields or (n_ctx, n_vocab, n_chunk)))
    return head + struct.pack("<%di" % len(tokens), *tokens) + bytes(2 * slots * rows * n_chunk) + extra


# ---- the tiny checkpoint the checkpoint cases break ----

D, F, V = 16, 32, 32  # hidden, ffn, vocab; 2 heads of 8, 1 KV head, 1 layer
BF16_ONE = b"\x80\x3f"
E4M3_ONE = 0x38

CONFIG = {
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_act": "silu",
    "hidden_size": D, "intermediate_size": F, "vocab_size": V, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "quantization_config": {
        "quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"format": "nvfp4-pack-quantized", "targets": ["Linear"], "weights": {
            "num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16, "symmetric": True}}}},
}


def nvfp4(prefix, out, inp, scale=E4M3_ONE, gscale=1.0, packed_dtype="U8"):
    codes = bytes((i * 7 + 3) & 255 for i in range(out * inp // 2))
    return [(prefix + ".weight_packed", packed_dtype, [out, inp // 2], codes),
            (prefix + ".weight_scale", "F8_E4M3", [out, inp // 16], bytes([scale]) * (out * inp // 16)),
            (prefix + ".weight_global_scale", "F32", [1], struct.pack("<f", gscale))]


def model_tensors(**q_proj):
    """The tensors of the valid tiny checkpoint; `q_proj` options break layer 0's q_proj."""
    L = "model.layers.0."
    t = [("model.embed_tokens.weight", "BF16", [V, D], bytes(range(256)) * (V * D * 2 // 256)),
         (L + "input_layernorm.weight", "BF16", [D], BF16_ONE * D),
         (L + "post_attention_layernorm.weight", "BF16", [D], BF16_ONE * D),
         ("model.norm.weight", "BF16", [D], BF16_ONE * D)]
    t += nvfp4(L + "self_attn.q_proj", 16, D, **q_proj)
    t += nvfp4(L + "self_attn.k_proj", 8, D) + nvfp4(L + "self_attn.v_proj", 8, D)
    t += nvfp4(L + "self_attn.o_proj", D, 16)
    t += nvfp4(L + "mlp.gate_proj", F, D) + nvfp4(L + "mlp.up_proj", F, D) + nvfp4(L + "mlp.down_proj", D, F)
    return t


def config(**changes):
    c = json.loads(json.dumps(CONFIG))
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return json.dumps(c, indent=1)


# ---- the cases ----

CASES = []  # dicts: name, what, cmd, exit, error


def case(name, what, cmd, error, files=None, exit_code=1):
    """`files`: {relative path: bytes | str | ("link", target)} under tests/bad-inputs/<name>; a single
    file named "" makes the case that file itself."""
    CASES.append({"name": name, "what": what, "cmd": cmd, "exit": exit_code, "error": error})
    if not files:
        return
    for rel, body in files.items():
        path = os.path.join(HERE, name, rel) if rel else os.path.join(HERE, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(body, tuple):
            os.symlink(body[1], path)
        else:
            with open(path, "wb") as f:
                f.write(body.encode() if isinstance(body, str) else body)


def folder(st=None, cfg=None, extra=None):
    """A model folder: config.json (`cfg`, else a link to the valid one), model.safetensors (`st`, else a link
    to the valid one; False: none), tekken.json linked to the tiny-kjv tokenizer, and `extra` files."""
    files = {"config.json": cfg if cfg is not None else ("link", "../ok-checkpoint/config.json"),
             "tekken.json": ("link", "../../data/tiny-kjv/nvfp4/tekken.json")}
    if st is not False:
        files["model.safetensors"] = st if st is not None else ("link", "../ok-checkpoint/model.safetensors")
    files.update(extra or {})
    return files


INSPECT = "inspect -m {case}"
LOGITS = "logits -m {case} --ids 1,2 -o {tmp}/out.safetensors"


def checkpoint_cases():
    case("ok-checkpoint", "the valid tiny checkpoint the other cases break (control)", INSPECT, "",
         folder(st=safetensors(model_tensors()), cfg=config()), exit_code=0)
    CASES.append(dict(CASES[-1], name="ok-checkpoint", cmd=LOGITS))
    Q = "model.layers.0.self_attn.q_proj"
    both = [
        ("ckpt-shape-mismatch", "config.json says hidden_size 32, the tensors are 16 wide",
         "has shape [32, 16], expected [32, 32]", folder(cfg=config(hidden_size=32, head_dim=16))),
        ("ckpt-missing-scale", "quantization_config says NVFP4; q_proj has codes but no weight_scale",
         "missing tensor '" + Q.replace("model.", "model.language_model.", 1) + ".weight_scale'",
         folder(st=safetensors([t for t in model_tensors() if t[0] != Q + ".weight_scale"]))),
        ("ckpt-nan-scale", "an NVFP4 block scale is E4M3 NaN (0x7f)", "holds a NaN E4M3 scale at row 0, group 0",
         folder(st=safetensors(model_tensors(scale=0x7F)))),
        ("ckpt-inf-global-scale", "an NVFP4 global scale is +inf", "holds global scale inf",
         folder(st=safetensors(model_tensors(gscale=float("inf"))))),
        ("ckpt-zero-global-scale", "an NVFP4 global scale is 0", "holds global scale 0",
         folder(st=safetensors(model_tensors(gscale=0.0)))),
        ("ckpt-wrong-dtype", "NVFP4 codes stored as I8 instead of U8", "has dtype I8, expected U8",
         folder(st=safetensors(model_tensors(packed_dtype="I8")))),
        ("ckpt-missing-shard", "the index names a shard that is not in the folder", "is missing from",
         folder(st=False, extra={"model.safetensors.index.json": json.dumps(
             {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}})})),
    ]
    for name, what, err, files in both:
        case(name, what, INSPECT, err, files)
        CASES.append(dict(CASES[-1], cmd=LOGITS))

    ts = model_tensors()
    half = len(ts) // 2
    index = {"weight_map": {t[0]: ("a.safetensors" if i < half else "b.safetensors") for i, t in enumerate(ts)}}
    for name, what, err, idx, shards in [
        ("index-bad-json", "model.safetensors.index.json is not JSON", "not valid JSON", "{\"weight_map\": ", {}),
        ("index-no-weight-map", "the index has no weight_map", "has no weight_map object", "{\"metadata\": {}}", {}),
        ("index-path-escape", "the index names a shard outside the folder", "names an invalid shard '../x.safetensors'",
         json.dumps({"weight_map": {"model.norm.weight": "../x.safetensors"}}), {}),
        ("index-wrong-shard", "the index lists a tensor under the other shard",
         "is listed under tests/bad-inputs/index-wrong-shard/a.safetensors but lives in",
         json.dumps({"weight_map": dict(index["weight_map"], **{ts[-1][0]: "a.safetensors"})}),
         {"a.safetensors": safetensors(ts[:half]), "b.safetensors": safetensors(ts[half:])}),
        ("index-ghost-tensor", "the index lists a tensor no shard holds",
         "tensor 'ghost' listed in the index is not in this shard",
         json.dumps({"weight_map": dict(index["weight_map"], ghost="b.safetensors")}),
         {"a.safetensors": safetensors(ts[:half]), "b.safetensors": safetensors(ts[half:])}),
        ("index-duplicate-tensor", "two shards hold the same tensor", "also appears in", json.dumps(index),
         {"a.safetensors": safetensors(ts[:half]), "b.safetensors": safetensors(ts[half - 1:])}),
    ]:
        case(name, what, INSPECT, err, folder(st=False, extra=dict(shards, **{"model.safetensors.index.json": idx})))

    case("ckpt-no-weights", "a folder with config.json and no safetensors", INSPECT,
         "no model.safetensors or model.safetensors.index.json", folder(st=False))
    no_tekken = {k: v for k, v in folder(extra={"tokenizer.json": "{}"}).items() if k != "tekken.json"}
    case("ckpt-no-tekken", "a quantized folder with transformers' tokenizer.json but no tekken.json",
         "tokenize -m {case} --text hi", "has no tekken.json, Mistral's tokenizer file (its tokenizer.json", no_tekken)
    case("ckpt-consolidated-only", "only Mistral's native consolidated.safetensors", INSPECT,
         "only the Mistral-native consolidated.safetensors is present",
         folder(st=False, extra={"consolidated.safetensors": safetensors(model_tensors())}))
    case("ckpt-name-collision", "a tensor under both the old and the new transformers name", INSPECT,
         "both map to 'model.language_model.norm.weight'",
         folder(st=safetensors(model_tensors() + [("language_model.model.norm.weight", "BF16", [D], BF16_ONE * D)])))
    dense_q = [t for t in model_tensors() if not t[0].startswith(Q + ".")] + [
        (Q + ".weight", "BF16", [16, D], BF16_ONE * (16 * D))]
    case("ckpt-quant-dense", "quantization_config quantizes every Linear; q_proj is stored dense", INSPECT,
         "is dense, but quantization_config quantizes Linear 'model.layers.0.self_attn.q_proj'",
         folder(st=safetensors(dense_q)))
    qc = json.loads(json.dumps(CONFIG["quantization_config"]))
    qc["ignore"] = ["lm_head", "re:.*q_proj$"]
    case("ckpt-quant-ignored", "q_proj is NVFP4 but quantization_config ignores it", INSPECT,
         "should be dense: 're:.*q_proj$' is in its ignore list", folder(cfg=config(quantization_config=qc)))
    case("ckpt-no-quant-config", "NVFP4 tensors, but config.json has no quantization_config", INSPECT,
         "should be dense: config.json has no quantization_config", folder(cfg=config(quantization_config=None)))
    case("ckpt-not-a-folder", "-m names a folder that does not exist", INSPECT, "cannot open (is this a model folder?)")


def config_cases():
    for name, what, err, cfg in [
        ("config-bad-json", "config.json is not JSON", "config.json: not valid JSON", "{\"architectures\": ["),
        ("config-not-object", "config.json is a JSON array", "not a JSON object", "[1, 2]"),
        ("config-architecture", "an architecture this engine does not run", "architecture 'LlamaForCausalLM' is not supported",
         config(architectures=["LlamaForCausalLM"])),
        ("config-missing-key", "hidden_size is missing", "hidden_size is missing", config(hidden_size=None)),
        ("config-zero-heads", "num_attention_heads is 0", "num_attention_heads = 0 is not a sane positive size",
         config(num_attention_heads=0)),
        ("config-huge-kv-heads", "num_key_value_heads is 2^32 (0 once narrowed to int: a division by zero)",
         "num_key_value_heads = 4294967296 is not a sane positive size", config(num_key_value_heads=4294967296)),
        ("config-huge-layers", "num_hidden_layers is 10^9", "num_hidden_layers = 1000000000 is not a sane positive size",
         config(num_hidden_layers=1000000000)),
        ("config-kv-heads", "num_key_value_heads does not divide num_attention_heads",
         "num_key_value_heads = 3 does not divide num_attention_heads", config(num_key_value_heads=3)),
        ("config-float-size", "hidden_size is 16.5", "hidden_size must be an integer", config(hidden_size=16.5)),
        ("config-yarn", "YaRN rope scaling", "only the default rope is supported",
         config(rope_scaling={"rope_type": "yarn", "factor": 4.0})),
        ("config-sliding-window", "sliding-window attention", "sliding_window = 16 (sliding-window attention) is not supported",
         config(sliding_window=16)),
        ("config-quant-method", "a quantization method other than compressed-tensors", "quant_method = 'gptq' is not supported",
         config(quantization_config={"quant_method": "gptq", "bits": 4})),
        ("config-quant-regex", "an ignore entry whose regex does not compile", "not a valid regular expression",
         config(quantization_config=dict(CONFIG["quantization_config"], ignore=["re:.*vision_tower(.*"]))),
        ("config-group-size", "NVFP4 with a group size of 32", "group_size must be 16",
         config(quantization_config=dict(CONFIG["quantization_config"], config_groups={"g": {
             "format": "nvfp4-pack-quantized",
             "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 32}}}))),
    ]:
        case(name, what, INSPECT, err, folder(cfg=cfg))


def safetensors_cases():
    ok = [("a", "U8", [4], b"abcd"), ("b", "BF16", [2], b"\0\0\0\0")]
    for name, what, err, st in [
        ("st-short", "model.safetensors is 4 bytes long", "too short for a safetensors header", b"\x10\0\0\0"),
        ("st-header-huge", "the header length field says 16 EB", "exceeds the 100 MB limit",
         safetensors(ok, hlen=(1 << 64) - 1)),
        ("st-header-past-end", "the header length runs past the end of the file", "runs past the end",
         safetensors(ok, hlen=4096)),
        ("st-header-not-json", "the header is not JSON", "header is not valid JSON", safetensors(ok, header="{\"a\": ")),
        ("st-header-array", "the header is a JSON array", "header is not a JSON object", safetensors([], header="[]")),
        ("st-entry-not-object", "a tensor entry is a number", "entry is not an object", safetensors([], header="{\"a\":1}")),
        ("st-metadata", "__metadata__ is a list", "__metadata__ is not an object", safetensors(ok, metadata=[1])),
        ("st-unknown-dtype", "a dtype safetensors does not have", "unknown dtype 'F4'",
         safetensors([("a", "F4", [4], b"abcd")])),
        ("st-rank", "a tensor of rank 9", "rank 9 exceeds the limit of 8",
         safetensors([("a", "U8", [1] * 9, b"a")])),
        ("st-negative-dim", "a negative dimension", "non-integer or negative dimension",
         safetensors([], header="{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}")),
        ("st-span-mismatch", "shape × dtype size differs from the byte span", "does not match its 4-byte data span",
         safetensors([("a", "BF16", [4], b"abcd")])),
        ("st-shape-overflow", "dimensions whose product overflows 64 bits", "does not match its 4-byte data span",
         safetensors([("a", "U8", [1 << 32, 1 << 32, 2], b"abcd")])),
        ("st-outside", "a data span beyond the end of the file", "lies outside the 4-byte data area",
         safetensors([], header="{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}") + b"abcd"),
        ("st-reversed", "data_offsets with begin > end", "data_offsets begin 4 > end 0",
         safetensors([], header="{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}") + b"abcd"),
        ("st-overlap", "two tensors share bytes", "overlaps tensor",
         safetensors([], header="{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                                "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}") + b"abcd"),
    ]:
        case(name, what, INSPECT, err, folder(st=st))
    case("st-directory", "model.safetensors is a folder", INSPECT, "not a regular file",
         folder(st=False, extra={"model.safetensors/.keep": b""}))


def tokenizer_cases():
    def tok(name, what, err, j, raw=None):
        body = raw if raw is not None else json.dumps(j)
        case(name, what, "tokenize -m {case} --text hi", err, {"": body})

    t = tekken()
    tok("tekken-bad-json.json", "tekken.json is not JSON", "parse error", None, "{\"config\": ")
    tok("tekken-no-config.json", "tekken.json has no config", "key 'config' not found", None, "{\"vocab\": []}")
    bad = tekken(version="11")
    tok("tekken-version.json", "an unknown tokenizer version", "unknown tokenizer version \"11\"", bad)
    bad = tekken()
    bad["config"]["default_vocab_size"] = 100
    tok("tekken-vocab-size.json", "default_vocab_size smaller than the specials plus 256 bytes",
        "default_vocab_size 100 does not fit", bad)
    bad = tekken()
    bad["vocab"][257]["token_bytes"] = "!!"
    tok("tekken-base64.json", "a token's bytes are not base64", "bad base64", bad)
    bad = tekken()
    bad["vocab"][5]["rank"] = 6
    tok("tekken-rank.json", "vocab entries out of rank order", "vocab[5] has another rank", bad)
    tok("tekken-duplicate.json", "two ranks with the same bytes", "duplicate token bytes at ranks 256 and 257",
        tekken(merges=(b"th", b"th")))
    tok("tekken-pattern.json", "a pre-tokenizer regex that does not compile", "bad pattern at offset",
        tekken(pattern="(unclosed"))
    tok("tekken-no-bos.json", "the special tokens lack <s>", "unknown special token <s>",
        tekken(specials=["<unk>", "<pad>", "</s>"]))
    tok("tekken-special-twice.json", "a special token listed twice", "special token <unk> appears twice",
        tekken(specials=["<unk>", "<s>", "</s>", "<pad>", "<unk>"]))
    tok("tekken-no-specials.json", "a v11 file without special_tokens", "special_tokens missing (required after v7)",
        tekken(specials=None))
    bad = tekken()
    bad["config"]["default_num_special_tokens"] = 1e300
    tok("tekken-huge-number.json", "default_num_special_tokens is 1e300", "default_num_special_tokens", bad)
    tok("tekken-image-size.json", "image.max_image_size is 0", "max_image_size",
        tekken(image={"image_patch_size": 14, "max_image_size": 0, "spatial_merge_size": 2}))
    case("tekken-missing", "-m names no tokenizer", "tokenize -m {case}.json --text hi", "No such file or directory")
    case("decode-out-of-range", "--decode with an id past the vocabulary", "tokenize -m " + KJV + " --decode 1,99999",
         "token id 99999 outside [0, 5120)")
    case("decode-not-ids", "--decode with something that is not a list of ids", "tokenize -m " + KJV + " --decode 1,x",
         "--decode wants comma-separated integers")


def image_cases():
    run = "logits -m " + KJV + " --ids 1,2 --image {case} -o {tmp}/out.safetensors"
    for name, what, err, body in [
        ("img-empty.png", "a 0-byte file", "empty file, not an image", b""),
        ("img-text.png", "a text file named .png", "not an image (PNG, JPEG, WebP, BMP or GIF expected)", b"hello\n"),
        ("img-truncated.png", "a PNG cut in the middle of its pixels", "corrupt or truncated image",
         png(64, 64, cut=-30)),
        ("img-bad-header.png", "a PNG whose IHDR chunk is cut", "corrupt or truncated PNG header", png(8, 8, cut=20)),
        ("img-zero-width.png", "a PNG declaring 0 pixels wide", "empty image (0 pixels wide or high)",
         png(1, 1, ihdr=(0, 1))),
        ("img-huge.png", "a 20000×20000 PNG header (400 MP) over tiny data", "exceeds the limit of 178956970 pixels",
         png(1, 1, ihdr=(20000, 20000))),
        ("img-thin.png", "a 1×3000 PNG: one side scales below a pixel", "too thin", png(1, 3000, color_type=0)),
        ("img-truncated-data.jpg", "a JPEG cut in its scan data", "truncated JPEG",
         open(os.path.join(os.path.dirname(HERE), "data", "tiny-a", "images", "photo.jpg"), "rb").read()[:12000]),
        ("img-truncated.bmp", "a BMP cut in its pixel rows (stb_image alone reads black there)", "truncated BMP",
         bmp(64, 64)[:6000]),
        ("img-truncated-data.gif", "a GIF cut in its LZW data (stb_image alone reads black there)", "truncated GIF",
         gif(32, 32)[:300]),
        ("img-bomb.png", "a 1×1 PNG whose data inflates to 64 MB (a decompression bomb)",
         "PNG data inflates to more than 1048581 bytes although its 1x1 header implies 4", png_bomb(1, 1, 64 << 20)),
        ("img-truncated.jpg", "a JPEG cut after its header", "truncated JPEG",
         open(os.path.join(os.path.dirname(HERE), "data", "tiny-a", "images", "photo.jpg"), "rb").read()[:600]),
        ("img-truncated.gif", "a GIF cut after its palette", "corrupt or truncated", GIF_1X1[:20]),
        ("img-truncated-header.webp", "a WebP cut in its first chunk's header", "truncated WebP header",
         WEBP_16X16[:16]),
        ("img-truncated.webp", "a WebP cut in its image data", "corrupt or truncated WebP", WEBP_16X16[:112]),
        ("img-huge.webp", "a WebP canvas of 16000×16000 (256 MP) with no image data",
         "exceeds the limit of 178956970 pixels", webp_vp8x(16000, 16000, 0x02)),
        ("img-jpeg-huffman.jpg", "a JPEG Huffman table of 4080 codes (stb_image 2022 overflowed its tables)",
         "corrupt JPEG (Bogus Huffman table definition)",
         b"\xff\xd8\xff\xc4\x10\x13\x13" + b"\xff" * 16),
    ]:
        case(name, what, run, err, {"": body})
    case("img-pixel-budget", "a valid 112×112 image over --max-image-pixels 1000",
         "logits -m " + KJV + " --ids 1,2 --image tests/data/tiny-kjv/images/red_circle.png --max-image-pixels 1000 "
         "-o {tmp}/out.safetensors", "112x112 exceeds the limit of 1000 pixels")
    case("img-missing.png", "an image path that does not exist", run, "cannot open: No such file or directory")
    case("img-token-mismatch", "--ids without [IMG] tokens for a valid image",
         "logits -m " + KJV + " --ids 1,2 --image tests/data/tiny-kjv/images/red_circle.png -o {tmp}/out.safetensors",
         "[IMG] tokens")
    case("chat-image", "chat one-shot with a broken image", "chat -m " + KJV + " -p hi --image {case}",
         "not an image", {"": b"GIF8"})


def limit_cases():
    case("ctx-beyond-model", "-c above max_position_embeddings (131072)",
         "logits -m " + KJV + " --ids 1,2 -c 200000 -o {tmp}/out.safetensors",
         "context size 200000 exceeds the model's maximum of 131072 tokens")
    case("chat-ctx-beyond-model", "chat -c above max_position_embeddings", "chat -m " + KJV + " -p hi -c 200000",
         "exceeds the model's maximum of 131072 tokens")
    case("prompt-beyond-ctx", "logits: more ids than -c", "logits -m " + KJV + " --ids 1,2,3,4 -c 3 -o {tmp}/out.safetensors",
         "the prompt has 4 tokens, more than the context of 3 (-c)")
    case("chat-prompt-beyond-ctx", "chat: a prompt longer than -c", "chat -m " + KJV + " -f {case} -c 32",
         "tokens but the context holds 32 (raise -c)",
         {"": "In the beginning God created the heaven and the earth. " * 8})
    case("chat-n-beyond-ctx", "chat: -n larger than the whole context", "chat -m " + KJV + " -p hi -c 64 -n 100",
         "-n 100 exceeds the context of 64 tokens (-c)")
    case("chat-n-plus-prompt", "chat one-shot: prompt plus -n beyond the context", "chat -m " + KJV + " -p hi -c 64 -n 61",
         "the prompt needs 4 tokens and -n asks for 61 more, but the context holds 64")
    case("id-beyond-vocab", "logits: an id past the vocabulary", "logits -m " + KJV + " --ids 1,6000 -o {tmp}/out.safetensors",
         "token id 6000 is outside the vocabulary")
    case("ids-not-numbers", "logits: --ids that are not numbers", "logits -m " + KJV + " --ids 1,x -o {tmp}/out.safetensors",
         "--ids: 'x' is not a token id")
    case("ppl-too-short.txt", "perplexity on a text shorter than two contexts",
         "perplexity -m " + KJV + " -f {case} -c 64", "you need at least 128 tokens", {"": "hello world\n"})
    case("ppl-missing.txt", "perplexity on a text file that does not exist", "perplexity -m " + KJV + " -f {case}",
         "cannot open tests/bad-inputs/ppl-missing.txt")
    case("chat-no-model", "chat -m on a folder that does not exist", "chat -m {case} -p hi", "does not exist")
    case("chat-tools-json.json", "--tools file that is not JSON", "chat -m " + KJV + " -p hi --tools {case}",
         "not valid JSON (at byte", {"": "[{\"type\": \"function\","})
    case("chat-tools-name.json", "--tools with an invalid function name", "chat -m " + KJV + " -p hi --tools {case}",
         "must match [a-zA-Z0-9_-]{1,64}", {"": json.dumps([{"name": "has space", "parameters": {}}])})
    case("chat-tools-deep.json", "--tools nested 20000 levels deep (recursive JSON copies overflow the stack)",
         "chat -m " + KJV + " -p hi --tools {case}", "nested deeper than",
         {"": "[{\"name\": \"f\", \"parameters\": {\"a\": " + "[" * 20000 + "]" * 20000 + "}}]"})
    case("chat-tools-not-list.json", "--tools that is not a list", "chat -m " + KJV + " -p hi --tools {case}",
         "tools: expected a JSON array of functions", {"": "{\"name\": \"f\"}"})


def kld_cases():
    run = "kld -m " + KJV + " --base {case}"
    for name, what, err, body in [
        ("kld-magic.dat", "not a _logits_ file", "does not look like a file containing log-probabilities",
         b"GGUF" + bytes(40)),
        ("kld-header.dat", "n_ctx of 2 (no scored rows)", "corrupt header (n_ctx 2", kld(4, 8, 1, raw_fields=(2, 8, 1))),
        ("kld-truncated.dat", "a file shorter than its header implies", "is truncated", kld(8, 10, 2)[:-10]),
        ("kld-extra.dat", "bytes after the last row", "bytes more than its header describes", kld(8, 10, 1, extra=b"xx")),
        ("kld-token.dat", "a token outside the vocabulary", "is outside its vocabulary of 10",
         kld(8, 10, 1, tokens=[1, 2, 3, 99, 4, 5, 6, 7])),
        ("kld-overflow.dat", "header sizes whose product overflows 64 bits", "is truncated",
         kld(4, 8, 1, raw_fields=(0x7fffffff, 0x7fffffff, 0x7fffffff))),
        ("kld-vocab.dat", "a valid file for another vocabulary", "vocabulary mismatch", kld(8, 10, 1)),
    ]:
        case(name, what, run, err, {"": body})


def readme(bin_dir):
    """README.md: the table of cases with the error line each one really prints (run from the repo root)."""
    import subprocess
    import tempfile
    root = os.path.dirname(os.path.dirname(HERE))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in CASES:
            cmd = c["cmd"].replace("{case}", "tests/bad-inputs/" + c["name"]).replace("{tmp}", tmp)
            r = subprocess.run(os.path.join(bin_dir, cmd.split()[0]) + " " + cmd.split(" ", 1)[1], shell=True,
                               cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
            err = [l for l in r.stderr.replace("\r", "\n").split("\n") if l.startswith("error:")]
            seen = err[0] if err else "(exit %d, no error)" % r.returncode
            rows.append("| `%s` | %s | `%s` |" % (cmd.replace(tmp, "/tmp").replace("|", "\\|"), c["what"],
                                                   seen.replace(root + "/", "").replace("|", "\\|")))
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(README_HEAD + "\n".join(rows) + "\n")


README_HEAD = """# Bad inputs

One small broken input per case, each run through the real binaries by `tests/test_bad_inputs.cpp`
(`ctest -R test_bad_inputs`): every case must end with exit code 1 (never a signal or a sanitizer report) and
exactly one `error:` line on stderr holding the expected text, within 120 s. `cases.json` lists the command
(`{case}` is the file or folder of that name here, `{tmp}` a scratch folder), the exit code and the expected
text; `make_cases.py` writes the inputs and `cases.json`, and with `--readme BIN_DIR` this file, the last
column being what the binaries of BIN_DIR print. `ok-checkpoint` is the valid 1-layer NVFP4 checkpoint
(exit code 0) that the `ckpt-*`, `config-*`, `st-*` and `index-*` cases break; their folders link unchanged
files to it and to the tiny-kjv tokenizer. Limits: safetensors headers ≤ 100 MB, ≤ 2^20 tensors of rank ≤ 8;
config sizes ≤ 2^31 − 1 and counts (layers, heads, head_dim, patch, ...) ≤ 65536; images ≤ 178,956,970 pixels
(Pillow's limit) by default (`--max-image-pixels`; checked on the header, before decoding), PNG data inflating to at most 1.25× the
header's size + 1 MiB, no read past the end of an image file; tekken.json ≤ 2^20 special tokens; `-n` within
`-c` (one-shot chat: prompt + `-n` within `-c`).

| command | what it is | what the user sees |
|---|---|---|
"""


def main():
    for entry in os.listdir(HERE):
        if entry not in ("make_cases.py", "README.md", "__pycache__"):
            p = os.path.join(HERE, entry)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    checkpoint_cases()
    config_cases()
    safetensors_cases()
    tokenizer_cases()
    image_cases()
    limit_cases()
    kld_cases()
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump({"cases": CASES}, f, indent=1)
        f.write("\n")
    print("%d cases" % len(CASES))
    if len(sys.argv) == 3 and sys.argv[1] == "--readme":
        readme(sys.argv[2])


if __name__ == "__main__":
    main()
