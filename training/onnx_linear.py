"""ONNX graphs for linear codecs: Z = ((X - c) / s) @ W.T and X_hat = (Z @ W) * s + c.

The graphs take rows in the manifest's shape (N, *shape) with a dynamic batch axis, so clients
never flatten or standardise by hand. The scorer fuses reconstruction and the score (docs/score.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

from latentserve_core.manifest import ScoreSpec
from latentserve_core.runtime.base import RELATIVE_EPS, Detail

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


def _pool_nodes(
    prefix: str, src: str, spec: ScoreSpec, d: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Step 2 of docs/score.md on the (N, d) error `src`; returns the nodes, their constants and the
    pooled error's name (`src` itself without a pool)."""
    if spec.pool is None or spec.pool <= 1 or spec.image_shape is None:
        return [], [], src
    # (N, d) -> (N, H, W, C) -> (N, C, H, W), mean over pool x pool windows, back to (N, d')
    H, W, C = spec.image_shape
    r = spec.pool // 2
    inits = [
        _const(f"{prefix}pool_shape", np.asarray([-1, H, W, C], dtype=np.int64)),
        _const(f"{prefix}pool_flat", np.asarray([-1, d], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Reshape", [src, f"{prefix}pool_shape"], [f"{prefix}err_img"]),
        helper.make_node("Transpose", [f"{prefix}err_img"], [f"{prefix}err_nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "AveragePool",
            [f"{prefix}err_nchw"],
            [f"{prefix}err_pooled"],
            kernel_shape=[spec.pool, spec.pool],
            pads=[r, r, r, r],
            strides=[1, 1],
            count_include_pad=1,
        ),
        helper.make_node(
            "Reshape", [f"{prefix}err_pooled", f"{prefix}pool_flat"], [f"{prefix}err_pooled_flat"]
        ),
    ]
    return nodes, inits, f"{prefix}err_pooled_flat"


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
    pool_nodes, pool_inits, src = _pool_nodes("", src, spec, d)
    nodes += pool_nodes
    inits += pool_inits
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
    z: str,
    term: str,
    reference: np.ndarray,
    k: int,
    d: int,
    weight: float | None = None,
    prefix: str = "",
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """term = step 4 of docs/score.md, the neighbors term (clipping is monotone, so it commutes with
    taking the k smallest); `prefix` starts every name it adds to the graph."""
    R = np.asarray(reference, dtype=np.float32)
    inits = [
        _const(f"{prefix}reference_T_m2", np.ascontiguousarray(-2.0 * R.T)),  # x2 is exact in binary floats
        _const(f"{prefix}reference_sq", np.square(R, dtype=np.float32).sum(axis=1, dtype=np.float32)),
        _const(f"{prefix}zero", np.asarray(0.0, dtype=np.float32)),
        _const(f"{prefix}neighbors_k", np.asarray([k], dtype=np.int64)),
        _const(f"{prefix}nb_axis1", np.asarray([1], dtype=np.int64)),
        _const(f"{prefix}row_size", np.asarray(float(d), dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("Mul", [z, z], [f"{prefix}nb_z2"]),
        helper.make_node(
            "ReduceSum", [f"{prefix}nb_z2", f"{prefix}nb_axis1"], [f"{prefix}nb_z_sq"], keepdims=1
        ),
        helper.make_node("MatMul", [z, f"{prefix}reference_T_m2"], [f"{prefix}nb_cross"]),
        helper.make_node("Add", [f"{prefix}nb_cross", f"{prefix}nb_z_sq"], [f"{prefix}nb_part"]),
        helper.make_node("Add", [f"{prefix}nb_part", f"{prefix}reference_sq"], [f"{prefix}nb_dist"]),
    ]
    near = f"{prefix}nb_dist"
    if k < len(R):
        nodes.append(
            helper.make_node(
                "TopK",
                [f"{prefix}nb_dist", f"{prefix}neighbors_k"],
                [f"{prefix}nb_near", f"{prefix}nb_idx"],
                axis=1,
                largest=0,
            )
        )
        near = f"{prefix}nb_near"
    nodes += [
        helper.make_node("Max", [near, f"{prefix}zero"], [f"{prefix}nb_clipped"]),
        helper.make_node("ReduceMean", [f"{prefix}nb_clipped"], [f"{prefix}nb_mean"], axes=[1], keepdims=0),
        helper.make_node(
            "Div",
            [f"{prefix}nb_mean", f"{prefix}row_size"],
            [f"{prefix}nb_per_value" if weight is not None else term],
        ),
    ]
    if weight is not None:
        inits.append(_const(f"{prefix}neighbors_weight", np.asarray(weight, dtype=np.float32)))
        nodes.append(helper.make_node("Mul", [f"{prefix}nb_per_value", f"{prefix}neighbors_weight"], [term]))
    return nodes, inits


def detail_nodes(
    z: str,
    first: str,
    scores: str,
    spec: ScoreSpec,
    d: int,
    detail: Detail,
    reference: np.ndarray | None,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """scores = step 6 of docs/score.md: primary_weight * `first` + weight * the detail term, from
    the error that `score_nodes` names (err, or err_scaled with a scale) and the codes `z`."""
    assert spec.detail is not None
    err = "err_scaled" if spec.scale is not None else "err"
    C = np.asarray(detail.components, dtype=np.float32)
    inits = [
        _const("detail_T", np.ascontiguousarray(C.T)),
        _const("detail", np.ascontiguousarray(C)),
        _const("detail_primary_weight", np.asarray(spec.detail.primary_weight, dtype=np.float32)),
        _const("detail_weight", np.asarray(spec.detail.weight, dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("MatMul", [err, "detail_T"], ["dt_z"]),
        helper.make_node("MatMul", ["dt_z", "detail"], ["dt_along"]),
        helper.make_node("Sub", [err, "dt_along"], ["dt_err"]),
    ]
    pool_nodes, pool_inits, src = _pool_nodes("dt_", "dt_err", spec, d)
    nodes += [
        *pool_nodes,
        helper.make_node("Mul", [src, src], ["dt_sq"]),
        helper.make_node(
            "ReduceMean", ["dt_sq"], ["dt_res" if spec.neighbors else "dt_term"], axes=[1], keepdims=0
        ),
    ]
    inits += pool_inits
    if spec.neighbors is not None:
        if reference is None or detail.reference is None:
            raise ValueError("a detail term with neighbors needs both reference codes")
        both = np.concatenate([np.asarray(reference, dtype=np.float32), detail.reference], axis=1)
        n_nodes, n_inits = neighbor_nodes("dt_codes", "dt_near", both, spec.neighbors.k, d, prefix="dt_")
        nodes += [
            helper.make_node("Concat", [z, "dt_z"], ["dt_codes"], axis=1),
            *n_nodes,
            helper.make_node("Add", ["dt_res", "dt_near"], ["dt_term"]),
        ]
        inits += n_inits
    nodes += [
        helper.make_node("Mul", [first, "detail_primary_weight"], ["dt_first_w"]),
        helper.make_node("Mul", ["dt_term", "detail_weight"], ["dt_term_w"]),
        helper.make_node("Add", ["dt_first_w", "dt_term_w"], [scores]),
    ]
    return nodes, inits


def rotation_nodes(
    x2: str, before: str, scores: str, spec: ScoreSpec, rotation: bytes
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """scores = step 7 of docs/score.md: primary_weight * `before` + weight * the rotation term, the
    term's own graph (flat rows `x2` -> the term) taken in whole under the prefix rot_."""
    assert spec.rotation is not None
    term = onnx.load_from_string(rotation)
    opsets = {(o.domain or "", o.version) for o in term.opset_import}
    if opsets != {("", OPSET)} or len(term.functions):
        raise ValueError(f"the rotation term's model must use opset {OPSET} only, no functions; got {opsets}")
    graph = onnx.compose.add_prefix(term, "rot_").graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ValueError("the rotation term's model must take one input and give one output")
    inits = [
        *graph.initializer,
        _const("rot_primary_weight", np.asarray(spec.rotation.primary_weight, dtype=np.float32)),
        _const("rot_weight", np.asarray(spec.rotation.weight, dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("Identity", [x2], [graph.input[0].name]),
        *graph.node,
        helper.make_node("Mul", [before, "rot_primary_weight"], ["rot_before_w"]),
        helper.make_node("Mul", [graph.output[0].name, "rot_weight"], ["rot_term_w"]),
        helper.make_node("Add", ["rot_before_w", "rot_term_w"], [scores]),
    ]
    return nodes, inits


def build_linear_graphs(
    center: np.ndarray,
    scale: np.ndarray,
    components: np.ndarray,
    row_shape: tuple[int, ...],
    spec: ScoreSpec,
    reference: np.ndarray | None = None,
    detail: Detail | None = None,
    rotation: bytes | None = None,
) -> dict[str, onnx.ModelProto]:
    """Return encoder, decoder and scorer models for a linear codec (float32); a score with
    neighbors needs the reference codes (R, k), one with detail its arrays, one with a rotation
    term its ONNX model."""
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
    second = "scores" if spec.rotation is None else "score_second"  # steps 1-6
    first = second if spec.detail is None else "score_first"  # steps 1-5
    s_nodes, s_inits = score_nodes("e_x2", "d_flat_hat", first, spec, d, "nb_term" if n_nodes else None)
    s_nodes, s_inits = n_nodes + s_nodes, n_inits + s_inits
    if spec.detail is not None:
        if detail is None:
            raise ValueError("a score with detail needs its directions")
        t_nodes, t_inits = detail_nodes("Zs", first, second, spec, d, detail, reference)
        s_nodes, s_inits = s_nodes + t_nodes, s_inits + t_inits
    if spec.rotation is not None:
        if rotation is None:
            raise ValueError("a score with a rotation term needs its model")
        r_nodes, r_inits = rotation_nodes("e_x2", second, "scores", spec, rotation)
        s_nodes, s_inits = s_nodes + r_nodes, s_inits + r_inits
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
