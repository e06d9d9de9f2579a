"""A BERT-style encoder as an ONNX graph in ONNX Runtime's fused CPU kernels, and its dynamic int8
quantization: what both model builds share (build_minilm.py for the default model, convert_e5.py
for the multilingual one).

Each layer is one `Attention` node (Q/K/V projections packed into one matrix), a MatMul and a
`SkipLayerNormalization` ("add the residual and the bias, normalise" in one kernel), a MatMul and
`BiasGelu`, a MatMul and another `SkipLayerNormalization` — all in the `com.microsoft` domain.
After dynamic quantization the projections are `QAttention` and `MatMulInteger`. Against the same
weights in plain ONNX ops (what PyTorch exports), measured on 2 cores: all-MiniLM-L6-v2 embeds a
15-token query in 1.4 ms instead of 2.1 ms and a batch of two 220-token passages in 24 ms instead
of 40 ms, and its vectors are closer to the f32 model's (cosine 0.989 instead of 0.977 on random
token ids); multilingual-e5-small −15 % per query and −11 % per batch.
"""

import logging
import os

import numpy as np

OPSET = 17


class Graph:
    """Nodes and constants of one graph under construction."""

    def __init__(self, eps):
        self.nodes, self.weights, self.eps = [], [], eps

    def constant(self, name, array):
        from onnx import numpy_helper

        self.weights.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, **attributes):
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def layer_norm(self, x, prefix, weight, bias):
        return self.node(
            "LayerNormalization",
            [x, self.constant(prefix + ".w", weight), self.constant(prefix + ".b", bias)],
            prefix + ".out",
            axis=-1,
            epsilon=self.eps,
        )

    def embeddings(self, words, position_table, token_type, norm):
        """Word vectors (`words`, the name of a [batch, sequence, hidden] value) plus positions
        0..L-1 and token type 0, layer-normalised (`norm` = (weight, bias))."""
        length = self.node(
            "Slice",
            [
                self.node("Shape", ["input_ids"], "shape.ids"),
                self.constant("one", np.array([1], dtype=np.int64)),
                self.constant("two", np.array([2], dtype=np.int64)),
            ],
            "shape.length",
        )
        positions = self.node(
            "Slice",
            [self.constant("emb.pos", position_table), self.constant("zero", np.array([0], dtype=np.int64)), length],
            "emb.pos.slice",
        )
        x = self.node("Add", [self.node("Add", [words, positions], "emb.add_pos"), self.constant("emb.type0", token_type)], "emb.sum")
        return self.layer_norm(x, "emb.ln", *norm)

    def encoder_layer(self, p, x, mask, weights, num_heads):
        """One transformer layer named `p`. `weights` maps q, k, v, ao (attention output), fi
        (feed-forward in), fo (feed-forward out) to (weight [in, out], bias), and aln, oln (the two
        layer norms) to (weight, bias)."""
        packed_weight = np.concatenate([weights[n][0] for n in "qkv"], axis=1)
        packed_bias = np.concatenate([weights[n][1] for n in "qkv"])
        attention = self.node(
            "Attention",
            [x, self.constant(f"{p}.qkv.weight", packed_weight), self.constant(f"{p}.qkv.bias", packed_bias), mask],
            f"{p}.attention",
            domain="com.microsoft",
            num_heads=num_heads,
        )
        x = self.skip_layer_norm(self.matmul(attention, p, "ao", weights), x, p, "ao", "aln", weights)
        middle = self.matmul(x, p, "fi", weights)
        gelu = self.node("BiasGelu", [middle, self.constant(f"{p}.fi.bias", weights["fi"][1])], f"{p}.gelu", domain="com.microsoft")
        return self.skip_layer_norm(self.matmul(gelu, p, "fo", weights), x, p, "fo", "oln", weights)

    def matmul(self, x, p, linear, weights):
        # A constant [in, out] weight: the form the dynamic quantizer turns into int8.
        return self.node("MatMul", [x, self.constant(f"{p}.{linear}.weight", weights[linear][0])], f"{p}.{linear}.matmul")

    def skip_layer_norm(self, product, residual, p, linear, norm, weights):
        inputs = [
            product,
            residual,
            self.constant(f"{p}.{norm}.w", weights[norm][0]),
            self.constant(f"{p}.{norm}.b", weights[norm][1]),
            self.constant(f"{p}.{linear}.bias", weights[linear][1]),
        ]
        return self.node("SkipLayerNormalization", inputs, f"{p}.{norm}.out", domain="com.microsoft", epsilon=self.eps)

    def attention_mask(self):
        """The mask as the Attention kernel reads it: [batch, sequence] int32."""
        from onnx import TensorProto

        return self.node("Cast", ["attention_mask"], "mask.int32", to=TensorProto.INT32)

    def model(self, x, hidden, name, producer):
        """The graph with `x` as its `last_hidden_state` output ([batch, sequence, hidden])."""
        from onnx import TensorProto, helper

        self.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))
        inputs = [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ]
        outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.weights)
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        model.ir_version = 8
        return model


def quantize(model, work, op_types):
    """Dynamic int8 (per channel) for the `op_types` nodes — MatMul → MatMulInteger, Attention →
    QAttention, Gather → an int8 table gathered, then dequantized — written as work/model.onnx."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice on pre-processing is for CNNs
    source = os.path.join(work, "float.onnx")
    target = os.path.join(work, "model.onnx")
    onnx.save(model, source)
    quantize_dynamic(
        source,
        target,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=op_types,
        # Shape inference cannot see through com.microsoft ops; every float here is f32.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    os.remove(source)
    return target


def mean_pooled(session, ids, mask):
    """Unit-length mean-pooled sentence vectors from a session of such a graph (or of any
    model with the same inputs; `token_type_ids` is fed zeros where the model takes it)."""
    names = {i.name for i in session.get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    hidden = session.run(None, feeds)[0]
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
