"""Sentence-transformers encoders on CPU inference runtimes: ONNX Runtime and OpenVINO, driven directly.

Why directly: sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` go through
``optimum-onnx`` (only release: transformers < 4.58) and ``optimum-intel`` (transformers < 5.6, a
CUDA torch, an older huggingface-hub than ``datasets`` accepts); ``pip install --dry-run`` shows
both replacing our transformers 5.x. ``onnxruntime``, ``openvino`` and ``nncf`` install as pure
additions, so negforge exports the model itself:

* **export**: the whole SentenceTransformer forward (its Transformer, its Pooling as configured in
  the model's ``modules.json`` / ``1_Pooling/config.json``, its Normalize) is traced once with
  ``torch.onnx.export`` into one graph ``(input_ids, attention_mask, ...) -> sentence_embedding``,
  so pooling and normalisation are the model's own code, not a re-implementation;
* **inputs**: tokenised by the SentenceTransformer's own ``preprocess`` (same truncation, lower-casing,
  ``max_seq_length``), batched in its order (longest text first), so the padding matches too;
* **cache**: ``<cache_dir>/runtimes/<name>-<content hash>/`` beside the embeddings, keyed by the
  bytes of the model's files (weights, configs, tokenizer): a retrained folder gets a new export,
  an unchanged one is reused across processes. Files are written to a temp name and renamed;
* **precisions**: ``fp32``; ``int8`` = ONNX Runtime dynamic quantisation (per-channel int8 weights,
  activations quantised per batch at run time) or, for OpenVINO, NNCF's data-free int8 weight
  compression; ``bf16`` = OpenVINO's bf16 inference on CPUs with native bf16 (AVX512-BF16 / AMX).
  ``auto`` = OpenVINO's own default on this CPU (bf16 where native, else fp32); fp32 elsewhere.

Training stays on torch; a fine-tuned folder is exported once, the first time it is encoded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from negforge.synth.errors import ConfigError, MissingDependencyError
from negforge.synth.models import resolve_encoder

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
PRECISIONS = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
_SKIP_FILES = {"README.md", "train_result.json", ".gitattributes"}


def openvino_has_bf16() -> bool:
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(backend: str, precision: str) -> str:
    """``precision`` checked against ``backend``; ``auto`` made concrete (see the module doc)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown encoder backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if precision == "auto":
        return "bf16" if backend == "openvino" and openvino_has_bf16() else "fp32"
    if precision not in PRECISIONS[backend]:
        raise ConfigError(
            f"precision {precision!r} is not offered by backend {backend!r}; "
            f"valid: {', '.join(PRECISIONS[backend])}, auto"
        )
    if precision == "bf16" and backend == "openvino" and not openvino_has_bf16():
        raise ConfigError("precision bf16: this CPU has no native bf16 for OpenVINO; use fp32, int8 or auto")
    return precision


def model_dir(encoder: str) -> Path:
    """The local folder of ``encoder`` (a path, ``bundled:...``, or a hub name already in the local cache)."""
    name = resolve_encoder(encoder)
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss means: not available offline
        raise ConfigError(
            f"encoder {encoder!r}: the onnx/openvino backends need a local model folder "
            "(a path, or a hub name already downloaded); save it with model.save(PATH)"
        ) from None


def content_key(path: Path) -> str:
    """sha256 over the model folder's files (names and bytes), skipping checkpoints and notes."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if not f.is_file() or f.name in _SKIP_FILES or any(p.startswith((".", "checkpoint")) for p in rel.parts[:-1]):
            continue
        h.update(f"{rel.as_posix()}\n".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _write_atomic(target: Path, write) -> Path:
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")
    write(tmp)
    os.replace(tmp, target)
    return target


def export_onnx(st_model, target: Path) -> Path:
    """Trace ``st_model``'s full forward (to ``sentence_embedding``) into ``target`` (ONNX, opset 17)."""
    import torch

    feats = st_model.preprocess(["an example sentence to trace", "a second, longer example sentence to trace"])
    names = [k for k, v in feats.items() if isinstance(v, torch.Tensor)]
    extra = {k: v for k, v in feats.items() if not isinstance(v, torch.Tensor)}

    class Forward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st_model

        def forward(self, *tensors):
            return self.st({**dict(zip(names, tensors)), **extra})["sentence_embedding"]

    module = Forward().eval()
    dyn = {**{k: {0: "batch", 1: "sequence"} for k in names}, "sentence_embedding": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _write_atomic(
            target,
            lambda tmp: torch.onnx.export(
                module,
                tuple(feats[k] for k in names),
                str(tmp),
                dynamo=False,
                input_names=names,
                output_names=["sentence_embedding"],
                dynamic_axes=dyn,
                opset_version=17,
            ),
        )
    return target


def _ort_int8(fp32: Path, target: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _write_atomic(
        target, lambda tmp: quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    )


def _ov_int8(fp32: Path, target: Path) -> Path:
    import openvino as ov

    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("backend openvino with precision int8 needs 'pip install nncf'") from None
    model = nncf.compress_weights(ov.Core().read_model(str(fp32)), mode=nncf.CompressWeightsMode.INT8_ASYM)

    def write(tmp: Path) -> None:
        ov.save_model(model, str(tmp))
        os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))  # the weights first, then the graph

    return _write_atomic(target, write)


class RuntimeEncoder:
    """``encode`` / ``get_embedding_dimension`` like a SentenceTransformer, computed by ONNX Runtime or OpenVINO."""

    def __init__(
        self,
        encoder: str,
        backend: str = "onnx",
        precision: str = "fp32",
        max_seq_length: Optional[int] = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        from sentence_transformers import SentenceTransformer

        from negforge.synth.paths import cache_path

        self.backend, self.precision = backend, resolve_precision(backend, precision)
        if backend == "torch":
            raise ConfigError("RuntimeEncoder runs onnx or openvino; use the SentenceTransformer for torch")
        path = model_dir(encoder)
        self.st = SentenceTransformer(str(path), device="cpu")  # tokenizer and the graph to export
        if max_seq_length:
            self.st.max_seq_length = max_seq_length
        self.folder = (
            Path(cache_dir or cache_path("embeddings")) / "runtimes" / f"{path.name or 'encoder'}-{content_key(path)}"
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        fp32 = self.folder / "model.onnx"
        if not fp32.is_file():
            log.info("exporting %s to %s", encoder, fp32)
            export_onnx(self.st, fp32)
        self._run = self._onnxruntime(fp32) if backend == "onnx" else self._openvino(fp32)

    def _onnxruntime(self, fp32: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("backend onnx needs 'pip install onnxruntime onnx'") from None
        path = fp32
        if self.precision == "int8":
            path = self.folder / "model.int8.onnx"
            if not path.is_file():
                _ort_int8(fp32, path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads yield the CPU
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        return lambda feeds: session.run(None, {k: v for k, v in feeds.items() if k in names})[0]

    def _openvino(self, fp32: Path):
        try:
            import openvino as ov
        except ImportError:
            raise MissingDependencyError("backend openvino needs 'pip install openvino'") from None
        path = fp32
        if self.precision == "int8":
            path = self.folder / "openvino.int8.xml"
            if not path.is_file():
                _ov_int8(fp32, path)
        hint = "bf16" if self.precision == "bf16" else "f32"
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        names = {i.get_any_name() for i in compiled.inputs}
        request = compiled.create_infer_request()
        return lambda feeds: request.infer({k: v for k, v in feeds.items() if k in names})[0].copy()

    def get_embedding_dimension(self) -> int:
        get = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        dim = get()
        if dim is None:
            raise ValueError(f"{self.folder}: the encoder does not report its embedding dimension")
        return int(dim)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        normalize_embeddings: bool = True,
        show_progress_bar: bool = False,
        **_ignored,
    ) -> np.ndarray:
        """float32 (len(texts), dim); batches in the SentenceTransformer's order (longest text first)."""
        from tqdm.auto import tqdm

        texts = list(texts)
        out = np.zeros((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in tqdm(range(0, len(texts), batch_size), desc="encode", unit="batch", disable=not show_progress_bar):
            idx = order[start : start + batch_size]
            feats = self.st.preprocess([texts[i] for i in idx])
            feeds = {k: v.numpy() for k, v in feats.items() if hasattr(v, "numpy")}
            out[idx] = self._run(feeds)
        if normalize_embeddings and len(out):
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
