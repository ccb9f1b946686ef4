"""ONNX graphs for linear codecs: Z = ((X - c) / s) @ W.T and X_hat = (Z @ W) * s + c.

The graphs take rows in the manifest's shape (N, *shape) with a dynamic batch axis, so clients
never flatten or standardise by hand. The scorer fuses reconstruction and the score (docs/score.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from latentserve_core.manifest import ScoreSpec
from latentserve_core.runtime.base import RELATIVE_EPS

OPSET = 17


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(value), name=name)


def _encoder_nodes(prefix: str, x: str, z: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Reshape", [x, "flat_shape"], [f"{prefix}x2"]),
        helper.make_node("Sub", [f"{prefix}x2", "center"], [f"{prefix}xc"]),
        helper.make_node("Div", [f"{prefix}xc", "scale"], [f"{prefix}xs"]),
        helper.make_node("MatMul", [f"{prefix}xs", "components_T"], [z]),
    ]


def _decoder_nodes(prefix: str, z: str, x_hat: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("MatMul", [z, "components"], [f"{prefix}y"]),
        helper.make_node("Mul", [f"{prefix}y", "scale"], [f"{prefix}ys"]),
        helper.make_node("Add", [f"{prefix}ys", "center"], [f"{prefix}flat_hat"]),
        helper.make_node("Reshape", [f"{prefix}flat_hat", "row_shape"], [x_hat]),
    ]


def score_nodes(
    x_flat: str, x_hat_flat: str, scores: str, spec: ScoreSpec, d: int, extra: str | None = None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing the per-row score as specified in docs/score.md (the ONNX implementation);
    `extra` names the (batch,) neighbors term, added before the relative division."""
    nodes = [helper.make_node("Sub", [x_flat, x_hat_flat], ["err"])]
    inits: list[onnx.TensorProto] = []
    src = "err"
    if spec.scale is not None:
        inits.append(_const("score_scale", np.asarray(spec.scale, dtype=np.float32)))
        nodes.append(helper.make_node("Div", ["err", "score_scale"], ["err_scaled"]))
        src = "err_scaled"
    if spec.pool is not None and spec.pool > 1 and spec.image_shape is not None:
        # (N, d) -> (N, H, W, C) -> (N, C, H, W), mean over pool x pool windows, back to (N, d')
        H, W, C = spec.image_shape
        r = spec.pool // 2
        inits.append(_const("pool_shape", np.asarray([-1, H, W, C], dtype=np.int64)))
        inits.append(_const("pool_flat", np.asarray([-1, d], dtype=np.int64)))
        nodes += [
            helper.make_node("Reshape", [src, "pool_shape"], ["err_img"]),
            helper.make_node("Transpose", ["err_img"], ["err_nchw"], perm=[0, 3, 1, 2]),
            helper.make_node(
                "AveragePool",
                ["err_nchw"],
                ["err_pooled"],
                kernel_shape=[spec.pool, spec.pool],
                pads=[r, r, r, r],
                strides=[1, 1],
                count_include_pad=1,
            ),
            helper.make_node("Reshape", ["err_pooled", "pool_flat"], ["err_pooled_flat"]),
        ]
        src = "err_pooled_flat"
    nodes.append(helper.make_node("Mul", [src, src], ["sq"]))
    if spec.reduction == "topk" and spec.topk is not None and spec.topk < d:
        inits.append(_const("topk_k", np.asarray([spec.topk], dtype=np.int64)))
        nodes.append(helper.make_node("TopK", ["sq", "topk_k"], ["sq_top", "sq_idx"], axis=1))
        src = "sq_top"
    else:
        src = "sq"
    reduced = "score_abs" if spec.relative or extra else scores
    nodes.append(helper.make_node("ReduceMean", [src], [reduced], axes=[1], keepdims=0))
    if extra is not None:
        summed = "score_sum" if spec.relative else scores
        nodes.append(helper.make_node("Add", [reduced, extra], [summed]))
        reduced = summed
    if not spec.relative:
        return nodes, inits
    # relative: divide by the variance of the row's (scaled) input values + eps
    x = x_flat
    if spec.scale is not None:
        nodes.append(helper.make_node("Div", [x_flat, "score_scale"], ["x_scaled"]))
        x = "x_scaled"
    inits.append(_const("relative_eps", np.asarray(RELATIVE_EPS, dtype=np.float32)))
    nodes += [
        helper.make_node("ReduceMean", [x], ["x_mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", [x, "x_mean"], ["x_centred"]),
        helper.make_node("Mul", ["x_centred", "x_centred"], ["x_sq"]),
        helper.make_node("ReduceMean", ["x_sq"], ["x_contrast"], axes=[1], keepdims=0),
        helper.make_node("Add", ["x_contrast", "relative_eps"], ["x_contrast_eps"]),
        helper.make_node("Div", [reduced, "x_contrast_eps"], [scores]),
    ]
    return nodes, inits


def neighbor_nodes(
    z: str, term: str, reference: np.ndarray, k: int, d: int, weight: float | None = None
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """term = step 4 of docs/score.md, the neighbors term (clipping is monotone, so it commutes with
    taking the k smallest)."""
    R = np.asarray(reference, dtype=np.float32)
    inits = [
        _const("reference_T_m2", np.ascontiguousarray(-2.0 * R.T)),  # x2 is exact in binary floats
        _const("reference_sq", np.square(R, dtype=np.float32).sum(axis=1, dtype=np.float32)),
        _const("zero", np.asarray(0.0, dtype=np.float32)),
        _const("neighbors_k", np.asarray([k], dtype=np.int64)),
        _const("nb_axis1", np.asarray([1], dtype=np.int64)),
        _const("row_size", np.asarray(float(d), dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("Mul", [z, z], ["nb_z2"]),
        helper.make_node("ReduceSum", ["nb_z2", "nb_axis1"], ["nb_z_sq"], keepdims=1),
        helper.make_node("MatMul", [z, "reference_T_m2"], ["nb_cross"]),
        helper.make_node("Add", ["nb_cross", "nb_z_sq"], ["nb_part"]),
        helper.make_node("Add", ["nb_part", "reference_sq"], ["nb_dist"]),
    ]
    near = "nb_dist"
    if k < len(R):
        nodes.append(
            helper.make_node("TopK", ["nb_dist", "neighbors_k"], ["nb_near", "nb_idx"], axis=1, largest=0)
        )
        near = "nb_near"
    nodes += [
        helper.make_node("Max", [near, "zero"], ["nb_clipped"]),
        helper.make_node("ReduceMean", ["nb_clipped"], ["nb_mean"], axes=[1], keepdims=0),
        helper.make_node("Div", ["nb_mean", "row_size"], ["nb_per_value" if weight is not None else term]),
    ]
    if weight is not None:
        inits.append(_const("neighbors_weight", np.asarray(weight, dtype=np.float32)))
        nodes.append(helper.make_node("Mul", ["nb_per_value", "neighbors_weight"], [term]))
    return nodes, inits


def build_linear_graphs(
    center: np.ndarray,
    scale: np.ndarray,
    components: np.ndarray,
    row_shape: tuple[int, ...],
    spec: ScoreSpec,
    reference: np.ndarray | None = None,
) -> dict[str, onnx.ModelProto]:
    """Return encoder, decoder and scorer models for a linear codec (float32); a score with
    neighbors needs the reference codes (R, k)."""
    k, d = components.shape
    inits = [
        _const("center", center.astype(np.float32)),
        _const("scale", scale.astype(np.float32)),
        _const("components_T", components.T.astype(np.float32)),
        _const("components", components.astype(np.float32)),
        _const("flat_shape", np.asarray([-1, d], dtype=np.int64)),
        _const("row_shape", np.asarray([-1, *row_shape], dtype=np.int64)),
    ]
    X = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", *row_shape])
    Z = helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["batch", k])
    X_hat = helper.make_tensor_value_info("X_hat", TensorProto.FLOAT, ["batch", *row_shape])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch"])

    def model(graph: onnx.GraphProto) -> onnx.ModelProto:
        used = {i for n in graph.node for i in n.input}
        kept = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        m = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latentserve"
        )
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m

    enc = helper.make_graph(_encoder_nodes("e_", "X", "Z"), "encoder", [X], [Z], list(inits))
    dec = helper.make_graph(_decoder_nodes("d_", "Z", "X_hat"), "decoder", [Z], [X_hat], list(inits))
    n_nodes: list[onnx.NodeProto] = []
    n_inits: list[onnx.TensorProto] = []
    if spec.neighbors is not None:
        if reference is None:
            raise ValueError("a score with neighbors needs the reference codes")
        nb = spec.neighbors
        n_nodes, n_inits = neighbor_nodes("Zs", "nb_term", reference, nb.k, d, nb.weight)
    s_nodes, s_inits = score_nodes("e_x2", "d_flat_hat", "scores", spec, d, "nb_term" if n_nodes else None)
    s_nodes, s_inits = n_nodes + s_nodes, n_inits + s_inits
    scorer = helper.make_graph(
        _encoder_nodes("e_", "X", "Zs") + _decoder_nodes("d_", "Zs", "X_hat") + s_nodes,
        "scorer",
        [X],
        [X_hat, scores],
        list(inits) + s_inits,
    )
    return {"encoder": model(enc), "decoder": model(dec), "scorer": model(scorer)}


def save(model: onnx.ModelProto, path: Path) -> None:
    onnx.save_model(model, str(path))
