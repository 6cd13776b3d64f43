"""Writes the synthetic byte-level tokenizer used by test/test_tokenizer.c.

It exercises what the real families do not: added tokens with lstrip, rstrip,
single_word, normalized=true under an NFC normalizer, overlapping added
tokens ("<sp>" / "<sp>x"), and a TemplateProcessing BOS. Run from this
directory; it writes tokenizer.json, tokenizer_config.json and texts.jsonl
(the inputs). vectors.jsonl then comes from Hugging Face tokenizers, e.g.
with the Node binding (npm package tokenizers 0.23.2): for each text,
{"text", "ids": encode(text, add_special_tokens=False),
 "ids_bos": encode(text, add_special_tokens=True)}.
Added-token ids follow the vocabulary (260..267) because HF reassigns them
that way whatever the file says.
"""
import json
bs = list(range(ord("!"), ord("~")+1)) + list(range(ord("¡"), ord("¬")+1)) + list(range(ord("®"), ord("ÿ")+1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256+n); n += 1
b2u = {b: chr(c) for b, c in zip(bs, cs)}
vocab = {b2u[b]: b for b in range(256)}
merges = [["a","b"],["ab","c"],[b2u[32],"a"],["n","a"]]
nid = 256
for a,b in merges:
    vocab[a+b] = nid; nid += 1
def at(id, content, special=False, lstrip=False, rstrip=False, single_word=False, normalized=None):
    return {"id": id, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}
added = [
  at(260, "<s>", special=True, normalized=False),
  at(261, "<mask>", single_word=True, normalized=False),
  at(262, "[L]", lstrip=True, normalized=False),
  at(263, "[R]", rstrip=True, normalized=False),
  at(264, "na\u00efve", normalized=True),
  at(265, "<sp>", special=True, normalized=False),
  at(266, "<sp>x", normalized=False),
  at(267, "[B]", lstrip=True, rstrip=True, normalized=False),
]
tok = {
 "version": "1.0", "truncation": None, "padding": None,
 "added_tokens": added,
 "normalizer": {"type": "NFC"},
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
   {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": False},
   {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
   "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
   "special_tokens": {"<s>": {"id": "<s>", "ids": [260], "tokens": ["<s>"]}}},
 "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
 "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None, "end_of_word_suffix": None,
   "fuse_unk": False, "byte_fallback": False, "ignore_merges": False, "vocab": vocab, "merges": [a+" "+b for a,b in merges]}
}
json.dump(tok, open("tokenizer.json","w"), ensure_ascii=False, indent=1)
json.dump({"bos_token": "<s>", "eos_token": "<sp>", "add_bos_token": True, "tokenizer_class": "PreTrainedTokenizerFast"}, open("tokenizer_config.json","w"), indent=1)
texts = ["x <mask> y<mask> <mask>z <mask>", "<mask>", "a<mask>", "é<mask> <mask>_", "a  [L]b", "a[R]   b", "a \t[L][R]  b", "[L]", "  [B]  x  [B]",
 "[R]\u3000\u3000y", "nai\u0308ve and na\u00efve", "<sp><mask>", "<sp>x <sp>y", "abc abcab nab", "\u212b e\u0301 \u1100\u1161\u11a8",
 "'s 'S 'ſ", "[L][L]  [L]", "abc<s>abc", "", "  \n  x\r\n\r\n  "]
with open("texts.jsonl","w") as f:
    for t in texts: f.write(json.dumps(t, ensure_ascii=False)+"\n")
